//! The CloudEvents `type` of every event fathom writes.

/// An image's analysis finished (subject: the image digest).
pub const IMAGE_ANALYZED: &str = "dev.fathom.image.analyzed";
/// An image's analysis failed for good (subject: the image digest).
pub const IMAGE_ANALYSIS_FAILED: &str = "dev.fathom.image.analysis_failed";
/// A watched tag points at another digest (subject: the tag reference).
pub const TAG_MOVED: &str = "dev.fathom.tag.moved";
/// One image's vulnerability matches changed (subject: the image digest).
pub const IMAGE_VULNERABILITIES_CHANGED: &str = "dev.fathom.image.vulnerabilities.changed";
/// A vulnerability newly matched somewhere in the fleet in one round (subject: the vulnerability id).
pub const VULNERABILITY_NEW: &str = "dev.fathom.vulnerability.new";
/// An in-scope image's final policy action changed (subject: the image digest).
pub const IMAGE_POLICY_CHANGED: &str = "dev.fathom.image.policy.changed";
/// A vulnerability feed was synced and changed (subject: the feed name).
pub const FEED_SYNCED: &str = "dev.fathom.feed.synced";
/// An image was deleted from the store (subject: the image digest).
pub const IMAGE_DELETED: &str = "dev.fathom.image.deleted";
