//! Standard output and error for a command-line tool that may be piped
//! into `head` or a pager: once the reader has closed the pipe, further
//! lines are dropped and the program goes on to finish and exit with the
//! code its work decides, instead of panicking ("failed printing to
//! stdout: Broken pipe", exit 101) as `println!` does. Any other write
//! error still panics: output lost for another reason is a fault.
//!
//! The crate exports `println!`, `print!`, `eprintln!` and `eprint!` that
//! follow this rule; a binary takes them in place of the standard ones with
//! `#[macro_use] extern crate concord_cli_output;`. The project's
//! command-line tools (`concord-sim`, `concord-node`, `concord-cli`, the
//! examples) all print this way. A crate of its own so that the sans-IO
//! core (`concord`) carries no printing.

#![deny(missing_docs)]
#![forbid(unsafe_code)]

use std::fmt;
use std::io::{self, Write};
use std::sync::atomic::{AtomicBool, Ordering};

/// Whether the reader of standard output closed it.
static STDOUT_CLOSED: AtomicBool = AtomicBool::new(false);
/// Whether the reader of standard error closed it.
static STDERR_CLOSED: AtomicBool = AtomicBool::new(false);

/// Whether the reader of standard output closed it (a refreshing command
/// then stops).
pub fn stdout_closed() -> bool {
    STDOUT_CLOSED.load(Ordering::Relaxed)
}

/// Writes `args` (and a newline when `newline`) to standard output, or to
/// standard error when `to_stderr`; nothing once its reader is gone.
pub fn write(to_stderr: bool, newline: bool, args: fmt::Arguments) {
    let closed = if to_stderr {
        &STDERR_CLOSED
    } else {
        &STDOUT_CLOSED
    };
    if closed.load(Ordering::Relaxed) {
        return;
    }
    let result = if to_stderr {
        write_line(&mut io::stderr().lock(), newline, args)
    } else {
        write_line(&mut io::stdout().lock(), newline, args)
    };
    match result {
        Ok(()) => {}
        Err(error) if error.kind() == io::ErrorKind::BrokenPipe => {
            closed.store(true, Ordering::Relaxed);
        }
        Err(error) => panic!(
            "failed printing to {}: {error}",
            if to_stderr { "stderr" } else { "stdout" }
        ),
    }
}

fn write_line(out: &mut impl Write, newline: bool, args: fmt::Arguments) -> io::Result<()> {
    out.write_fmt(args)?;
    if newline {
        out.write_all(b"\n")?;
    }
    out.flush()
}

/// `println!` that stops quietly at a closed pipe.
#[macro_export]
macro_rules! println {
    () => { $crate::write(false, true, format_args!("")) };
    ($($arg:tt)*) => { $crate::write(false, true, format_args!($($arg)*)) };
}

/// `print!` that stops quietly at a closed pipe.
#[macro_export]
macro_rules! print {
    ($($arg:tt)*) => { $crate::write(false, false, format_args!($($arg)*)) };
}

/// `eprintln!` that stops quietly at a closed pipe.
#[macro_export]
macro_rules! eprintln {
    () => { $crate::write(true, true, format_args!("")) };
    ($($arg:tt)*) => { $crate::write(true, true, format_args!($($arg)*)) };
}

/// `eprint!` that stops quietly at a closed pipe.
#[macro_export]
macro_rules! eprint {
    ($($arg:tt)*) => { $crate::write(true, false, format_args!($($arg)*)) };
}

/// Standard output as a [`Write`] for code that takes a writer (shell
/// completions, reports), with the same closed-pipe rule as the macros:
/// once the reader is gone, writes are dropped and succeed.
pub struct Stdout;

impl Write for Stdout {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if STDOUT_CLOSED.load(Ordering::Relaxed) {
            return Ok(buf.len());
        }
        match io::stdout().lock().write(buf) {
            Err(error) if error.kind() == io::ErrorKind::BrokenPipe => {
                STDOUT_CLOSED.store(true, Ordering::Relaxed);
                Ok(buf.len())
            }
            result => result,
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        if STDOUT_CLOSED.load(Ordering::Relaxed) {
            return Ok(());
        }
        match io::stdout().lock().flush() {
            Err(error) if error.kind() == io::ErrorKind::BrokenPipe => {
                STDOUT_CLOSED.store(true, Ordering::Relaxed);
                Ok(())
            }
            result => result,
        }
    }
}
