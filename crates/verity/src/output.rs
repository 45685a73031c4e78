//! Standard output for a CLI that also runs network servers.
//!
//! SIGPIPE stays ignored (Rust's default): a validator or worker writes to sockets whose peer may
//! have gone, and the default disposition would kill it. A reader that closes our stdout
//! (`verity … | head`) instead ends the process quietly here, as a Unix filter would end.

use std::fmt;
use std::io::{self, Write};

/// Writes one formatted line to stdout; see the module docs for a closed stdout.
pub fn line(args: fmt::Arguments<'_>) {
    if let Err(e) = write(|out| writeln!(out, "{args}")) {
        // Nothing sensible is left to print to; report on stderr and carry on.
        eprintln!("error: writing to stdout: {e}");
    }
}

/// Writes raw bytes to stdout; a closed stdout ends the process quietly, as for [`line`].
pub fn bytes(data: &[u8]) -> io::Result<()> {
    write(|out| out.write_all(data))
}

/// Runs `put` on locked stdout and flushes; ends the process quietly if the reader has gone.
fn write(put: impl FnOnce(&mut io::StdoutLock<'static>) -> io::Result<()>) -> io::Result<()> {
    let mut out = io::stdout().lock();
    match put(&mut out).and_then(|()| out.flush()) {
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => std::process::exit(0),
        result => result,
    }
}

/// `println!` that ends the process quietly when stdout's reader has gone.
macro_rules! outln {
    () => { $crate::output::line(format_args!("")) };
    ($($arg:tt)*) => { $crate::output::line(format_args!($($arg)*)) };
}
