//! Command output on stdout. A reader that leaves early (`aimux check | head`) closes the
//! pipe, which ends the output rather than being an error; Rust ignores SIGPIPE, so
//! `println!` would panic there instead.

use std::io::{ErrorKind, Write};

/// Writes `text` to stdout; a closed pipe is not an error.
pub(crate) fn write_stdout(text: &str) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() == ErrorKind::BrokenPipe => Ok(()),
        other => other,
    }
}

/// Writes `text` to stderr; a closed pipe is not an error (there is nowhere left to say so).
pub(crate) fn write_stderr(text: &str) {
    let mut err = std::io::stderr().lock();
    let _ = err.write_all(text.as_bytes()).and_then(|()| err.flush());
}

/// `println!` for command output: same syntax; stops quietly when stdout is closed.
macro_rules! outln {
    ($($arg:tt)*) => {{
        let mut line = format!($($arg)*);
        line.push('\n');
        if let Err(e) = $crate::output::write_stdout(&line) {
            eprintln!("error: cannot write to stdout: {e}");
        }
    }};
}
pub(crate) use outln;

#[cfg(test)]
mod tests {
    #[test]
    fn writing_to_stdout_works() {
        assert!(super::write_stdout("").is_ok());
    }
}
