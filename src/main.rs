//! `parley`: every role of Parley in one binary, chosen by subcommand.

use clap::Parser;

mod cli;
mod shutdown;

/// mimalloc instead of the system allocator: a message allocates many small buffers
/// across the roles, and glibc's malloc took about a tenth of the CPU of a 2,000 msgs/s
/// run; with mimalloc the process used about 3% less (docs/benchmarks.md, *Less CPU
/// per message*).
///
/// Built without transparent huge pages (`no_thp`: mimalloc no longer advises the kernel
/// to back its memory with 2 MiB pages; a kernel set to THP `always` still may). With
/// them, the kernel zeroing fresh huge pages was 8 and 9% of the samples of two profiles
/// of one session posting as fast as acked; without, 1%. CPU per message did not move
/// outside its noise, but `parley dev` holds a third less memory before any connection
/// and 15 to 19% less with 10,000 open (docs/benchmarks.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    let cli = cli::Cli::parse();
    init_tracing(cli.log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("parley: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(cli.run()) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("parley: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Logs to stderr. Request URLs are never logged (a `?token=` or `?ticket=` must not
/// reach log files).
fn init_tracing(format: cli::LogFormat) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("PARLEY_LOG_LEVEL")
        .or_else(|_| EnvFilter::try_from_default_env())
        .unwrap_or_else(|_| EnvFilter::new("info,rdkafka=warn,librdkafka=warn"));
    if format == cli::LogFormat::Json {
        tracing_subscriber::fmt()
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .init();
        return;
    }
    use std::io::IsTerminal;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .init();
}
