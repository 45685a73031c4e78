//! Standard output for a CLI that also runs network servers.
//!
//! SIGPIPE stays ignored (Rust's default): a validator or worker writes to sockets whose peer may
//! have gone, and the default disposition would kill it. A reader that closes our stdout
//! (`verity … | head`) instead ends the process quietly here, as a Unix filter would end.

use std::fmt;
use std::io::{self, Write};

/// Writes one formatted line to stdout; see the module docs for a closed stdout.
pub fn line(args: fmt::Arguments<'_>) {
    let mut out = io::stdout().lock();
    if let Err(e) = writeln!(out, "{args}").and_then(|()| out.flush()) {
        if e.kind() == io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        // Nothing sensible is left to print to; report on stderr and carry on.
        eprintln!("error: writing to stdout: {e}");
    }
}

/// Writes raw bytes to stdout; a closed stdout ends the process quietly, as for [`line`].
pub fn bytes(data: &[u8]) -> io::Result<()> {
    let mut out = io::stdout().lock();
    match out.write_all(data).and_then(|()| out.flush()) {
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => std::process::exit(0),
        result => result,
    }
}

/// `println!` that ends the process quietly when stdout's reader has gone.
macro_rules! outln {
    () => { $crate::output::line(format_args!("")) };
    ($($arg:tt)*) => { $crate::output::line(format_args!($($arg)*)) };
}
