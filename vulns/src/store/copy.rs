//! Bulk writes with `COPY ... FROM STDIN` (text format): rows of packages and matches go to Postgres in a
//! few large messages instead of one statement per row or a JSON document unpacked by SQL.

use sqlx::PgConnection;

use crate::error::Result;

/// Bytes buffered before a chunk is sent: bounds memory whatever the row count.
const CHUNK: usize = 1 << 20;

/// Rows in COPY's text format, one field at a time.
#[derive(Default)]
pub(crate) struct CopyRows {
    buf: String,
    at_row_start: bool,
}

impl CopyRows {
    pub(crate) fn new() -> CopyRows {
        CopyRows {
            buf: String::with_capacity(CHUNK + 4096),
            at_row_start: true,
        }
    }

    fn sep(&mut self) {
        if !self.at_row_start {
            self.buf.push('\t');
        }
        self.at_row_start = false;
    }

    /// Escapes COPY's delimiter, row separator and escape character.
    fn escaped(&mut self, s: &str) {
        for c in s.chars() {
            match c {
                '\\' => self.buf.push_str("\\\\"),
                '\t' => self.buf.push_str("\\t"),
                '\n' => self.buf.push_str("\\n"),
                '\r' => self.buf.push_str("\\r"),
                c => self.buf.push(c),
            }
        }
    }

    /// A text field.
    pub(crate) fn text(&mut self, s: &str) -> &mut Self {
        self.sep();
        self.escaped(s);
        self
    }

    /// A NULL field.
    pub(crate) fn null(&mut self) -> &mut Self {
        self.sep();
        self.buf.push_str("\\N");
        self
    }

    /// A nullable field written by its text form (numbers, timestamps).
    pub(crate) fn opt<T: std::fmt::Display>(&mut self, v: Option<T>) -> &mut Self {
        match v {
            Some(v) => self.text(&v.to_string()),
            None => self.null(),
        }
    }

    /// A `boolean` field.
    pub(crate) fn bool(&mut self, b: bool) -> &mut Self {
        self.text(if b { "t" } else { "f" })
    }

    /// A `text[]` field: every element quoted (so empty strings, commas, braces and `NULL` stay text).
    pub(crate) fn array<S: AsRef<str>>(&mut self, items: &[S]) -> &mut Self {
        self.sep();
        let mut lit = String::from("{");
        for (i, item) in items.iter().enumerate() {
            if i > 0 {
                lit.push(',');
            }
            lit.push('"');
            for c in item.as_ref().chars() {
                if c == '"' || c == '\\' {
                    lit.push('\\');
                }
                lit.push(c);
            }
            lit.push('"');
        }
        lit.push('}');
        self.escaped(&lit);
        self
    }

    /// Ends a row.
    pub(crate) fn end_row(&mut self) {
        self.buf.push('\n');
        self.at_row_start = true;
    }
}

/// Runs `statement` (a `COPY table (cols) FROM STDIN`) on `conn`, sending each buffer as one chunk.
/// Buffers are owned and encoded beforehand: a future that holds borrowing iterators across the awaits
/// here would not be `Send` for every lifetime, which a spawned task needs.
pub(crate) async fn copy_in(
    conn: &mut PgConnection,
    statement: &str,
    buffers: Vec<CopyRows>,
) -> Result<u64> {
    let mut copy = conn.copy_in_raw(statement).await?;
    for rows in buffers {
        if rows.buf.is_empty() {
            continue;
        }
        if let Err(e) = copy.send(rows.buf.into_bytes()).await {
            // Abort so the connection leaves COPY mode before the error goes up.
            let _ = copy.abort("send failed").await;
            return Err(e.into());
        }
    }
    Ok(copy.finish().await?)
}

/// The buffer to write the next row to: the last one, or a fresh one when it is full (so each buffer
/// stays about one chunk).
pub(crate) fn next_buffer(buffers: &mut Vec<CopyRows>) -> &mut CopyRows {
    if buffers.last().is_none_or(full) {
        buffers.push(CopyRows::new());
    }
    let last = buffers.len() - 1;
    &mut buffers[last]
}

/// Whether a buffer is full enough to send.
fn full(rows: &CopyRows) -> bool {
    rows.buf.len() >= CHUNK
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_escaped_for_copy_and_arrays() {
        let mut r = CopyRows::new();
        r.text("a\tb\\c\nd")
            .null()
            .opt(Some(9.8))
            .opt(None::<f64>)
            .bool(true)
            .array(&["x,y", "q\"uote", "back\\slash", "", "NULL"]);
        r.end_row();
        assert_eq!(
            r.buf,
            "a\\tb\\\\c\\nd\t\\N\t9.8\t\\N\tt\t{\"x,y\",\"q\\\\\"uote\",\"back\\\\\\\\slash\",\"\",\"NULL\"}\n"
        );
    }
}
