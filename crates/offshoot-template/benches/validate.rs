//! Validating the whole corpus: per-file median time of a full check (parse, decode,
//! semantic checks), side by side in the same run with PyYAML's `safe_load` (parse only),
//! what a user would otherwise script. Medians, because this machine is noisy.
//!
//! Run: `cargo bench -p offshoot-template`

#![expect(clippy::print_stdout, reason = "a benchmark reports on stdout")]

use offshoot_template::document;
use std::path::PathBuf;
use std::time::Instant;

const ROUNDS: usize = 31;

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let dir = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into()))
        .join("../../../shared/corpus/release");
    let mut files: Vec<PathBuf> = Vec::new();
    let mut stack = vec![dir.clone()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).expect("corpus").flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "yaml" || x == "yml") {
                files.push(p);
            }
        }
    }
    files.sort();
    let sources: Vec<(String, String)> =
        files.iter().map(|p| (p.display().to_string(), std::fs::read_to_string(p).expect("read"))).collect();
    let bytes: usize = sources.iter().map(|(_, s)| s.len()).sum();

    // Per file: median over ROUNDS of one full check.
    let mut per_file: Vec<f64> = sources
        .iter()
        .map(|(name, src)| {
            let mut t: Vec<f64> = (0..ROUNDS)
                .map(|_| {
                    let start = Instant::now();
                    std::hint::black_box(document::check(name, src, None));
                    start.elapsed().as_secs_f64() * 1e6
                })
                .collect();
            median(&mut t)
        })
        .collect();
    let ours_median = median(&mut per_file.clone());
    per_file.sort_by(f64::total_cmp);
    let p90 = per_file[per_file.len() * 9 / 10];
    let max = per_file[per_file.len() - 1];
    println!("offshoot validate: {} files, {} KiB", sources.len(), bytes / 1024);
    println!("  per-file median {ours_median:.1} µs, p90 {p90:.1} µs, max {max:.1} µs");

    // PyYAML, same files, same method (median of ROUNDS per file, then median over files).
    let script = format!(
        "import sys,time,statistics,glob,yaml\nfiles=[l.strip() for l in sys.stdin if l.strip()]\nsrcs=[open(f).read() for f in files]\nmed=[]\nfor s in srcs:\n  t=[]\n  for _ in range({ROUNDS}):\n    a=time.perf_counter()\n    try: yaml.safe_load(s)\n    except Exception: pass\n    t.append((time.perf_counter()-a)*1e6)\n  med.append(statistics.median(t))\nprint(statistics.median(med))\n"
    );
    let list: String = files.iter().map(|p| format!("{}\n", p.display())).collect();
    let out = std::process::Command::new("python3")
        .args(["-c", &script])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write as _;
            c.stdin.take().expect("stdin").write_all(list.as_bytes())?;
            c.wait_with_output()
        });
    match out.ok().filter(|o| o.status.success()).and_then(|o| String::from_utf8(o.stdout).ok()).and_then(|s| s.trim().parse::<f64>().ok())
    {
        Some(py) => {
            println!("PyYAML safe_load (parse only): per-file median {py:.1} µs");
            println!("ratio: offshoot full validation is {:.1}x faster than parsing alone with PyYAML", py / ours_median);
        }
        None => println!("PyYAML not available (pip install pyyaml): no side-by-side figure"),
    }
}
