//! The capture reader alone, on a synthetic capture: how many packets per
//! second it reads and hands to the shared parser (no tracking).
//!
//! ```sh
//! cargo run --release --example capture_rate -- write /tmp/many.pcap 1300000   # about 1 GB
//! /usr/bin/time -v target/release/examples/capture_rate read /tmp/many.pcap
//! ```

use std::{
    env,
    fs::File,
    io::BufWriter,
    process::ExitCode,
    time::Instant,
};

use tcp_track::capture::{
    self,
    synth::{write_many_connections, SynthConfig},
};

fn main() -> ExitCode {
    let args: Vec<String> = env::args().skip(1).collect();
    let result = match args.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        ["write", path, connections] => write(path, connections),
        ["read", path] => read(path),
        _ => Err("usage: capture_rate write PATH CONNECTIONS | capture_rate read PATH".into()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("capture_rate: {e}");
            ExitCode::FAILURE
        }
    }
}

fn write(path: &str, connections: &str) -> Result<(), String> {
    let connections = connections.parse().map_err(|e| format!("CONNECTIONS {connections:?}: {e}"))?;
    let file = File::create(path).map_err(|e| format!("{path}: {e}"))?;
    let config = SynthConfig { connections, ..SynthConfig::default() };
    let start = Instant::now();
    let summary = write_many_connections(BufWriter::with_capacity(1 << 20, file), &config).map_err(|e| e.to_string())?;
    println!(
        "wrote {path}: {} connections, {} packets, {} bytes in {:.1} s",
        connections,
        summary.packets,
        summary.bytes,
        start.elapsed().as_secs_f64()
    );
    Ok(())
}

fn read(path: &str) -> Result<(), String> {
    let start = Instant::now();
    let mut reader = capture::open(path.as_ref()).map_err(|e| e.to_string())?;
    let mut tcp = 0u64;
    let mut payload = 0u64;
    while let Some(packet) = reader.next_packet().map_err(|e| e.to_string())? {
        if let Ok(segment) = packet.frame.parse() {
            tcp += 1;
            payload += segment.payload_len as u64;
        }
    }
    let secs = start.elapsed().as_secs_f64();
    let stats = reader.stats();
    println!(
        "read {path}: {} packets ({tcp} TCP, {payload} payload bytes), {} bytes in {secs:.2} s: {:.2} M packets/s, {:.0} MB/s",
        stats.packets,
        stats.bytes,
        stats.packets as f64 / secs / 1e6,
        stats.bytes as f64 / secs / 1e6
    );
    Ok(())
}
