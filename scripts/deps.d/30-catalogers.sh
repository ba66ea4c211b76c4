# The rpm cataloger links SQLite built from source (rusqlite's `bundled` feature): it needs a C compiler.
fathom_apt_install gcc libc6-dev
