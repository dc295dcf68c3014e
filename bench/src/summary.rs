//! `iii-bench summarize`: min / median / max of every numeric field over the runs of
//! each (scenario, client, engine).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Read;
use std::path::PathBuf;

use serde_json::Value;

use crate::BoxError;

const SKIP: [&str; 3] = ["run", "unix_time", "elapsed_s"];

/// Reads JSON lines from `files` (stdin when empty) and renders the markdown table.
pub fn summarize(files: &[PathBuf]) -> Result<String, BoxError> {
    let mut text = String::new();
    if files.is_empty() {
        std::io::stdin().read_to_string(&mut text)?;
    }
    for file in files {
        text.push_str(&std::fs::read_to_string(file)?);
        text.push('\n');
    }
    type Key = (String, String, String);
    let mut groups: BTreeMap<Key, BTreeMap<String, Vec<f64>>> = BTreeMap::new();
    let mut order: Vec<Key> = Vec::new();
    for line in text.lines().filter(|l| l.trim_start().starts_with('{')) {
        let v: Value = serde_json::from_str(line)?;
        let s = |k: &str| v[k].as_str().unwrap_or("").to_owned();
        let engine = match v["label"].as_str() {
            Some(label) => format!("{} [{label}]", s("engine")),
            None => s("engine"),
        };
        let key = (s("scenario"), s("client"), engine);
        if !groups.contains_key(&key) {
            order.push(key.clone());
        }
        let fields = groups.entry(key).or_default();
        for (name, value) in v.as_object().into_iter().flatten() {
            if SKIP.contains(&name.as_str()) {
                continue;
            }
            if let Some(x) = value.as_f64() {
                fields.entry(name.clone()).or_default().push(x);
            } else if name.starts_with("load_") {
                if let Some(x) = value.get(0).and_then(Value::as_f64) {
                    fields.entry(format!("{name}_1m")).or_default().push(x);
                }
            }
        }
    }
    let mut out = String::new();
    let _ = writeln!(
        out,
        "| scenario | client | engine | metric | runs | min | median | max |"
    );
    let _ = writeln!(out, "|---|---|---|---|---:|---:|---:|---:|");
    for key in order {
        for (name, values) in &mut groups[&key].clone() {
            values.sort_by(f64::total_cmp);
            let n = values.len();
            let median = if n % 2 == 1 {
                values[n / 2]
            } else {
                (values[n / 2 - 1] + values[n / 2]) / 2.0
            };
            let _ = writeln!(
                out,
                "| {} | {} | {} | {name} | {n} | {} | {} | {} |",
                key.0,
                key.1,
                key.2,
                fmt(values[0]),
                fmt(median),
                fmt(values[n - 1])
            );
        }
    }
    Ok(out)
}

fn fmt(x: f64) -> String {
    if x.fract() == 0.0 {
        format!("{x:.0}")
    } else {
        format!("{x:.2}")
    }
}
