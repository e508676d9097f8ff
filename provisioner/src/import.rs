//! Bulk import of machines from CSV, as operators keep rack sheets.
//!
//! Without a header, columns are positional: `mac,hostname,profile,key=value,key=value…`
//! (hostname and profile may be empty). With a header line whose first column is `mac`, columns
//! are named: `mac`, `hostname`, `profile`, `ip`, `uuid`, `serial`, `site`; any other name is a
//! label key. Blank lines and lines starting with `#` are skipped. Every problem is reported with
//! its line number, and a file with any problem imports nothing.

use std::collections::HashMap;

use inventory::{Mac, MachineSpec};

/// One problem, by 1-based line number.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct LineError {
    pub line: u64,
    pub message: String,
}

/// Longest message of one line's problem (characters): a message quoting a megabyte-long field
/// is cut, saying how long it was ([`inventory::excerpt`]). The same bound as the `detail` of an
/// API error, which carries these lines.
pub const MAX_MESSAGE: usize = 1000;

/// At most this many problems are reported; the rest are counted.
const MAX_REPORTED: usize = 50;

/// What is wrong with a CSV: `total` problems, of which the first [`MAX_REPORTED`] are listed
/// in `lines` (then one line, numbered 0, saying how many more).
#[derive(Debug)]
pub struct Problems {
    pub total: usize,
    pub lines: Vec<LineError>,
}

/// Parses a whole CSV: every row, or every problem (see [`Problems`]).
pub fn parse(text: &str) -> Result<Vec<(Mac, MachineSpec)>, Problems> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .trim(csv::Trim::All)
        .comment(Some(b'#'))
        .from_reader(text.as_bytes());
    let mut header: Option<Vec<String>> = None;
    let mut out = Vec::new();
    let mut errors = Vec::new();
    let mut seen: HashMap<Mac, u64> = HashMap::new();
    for (i, rec) in reader.records().enumerate() {
        let line =
            |rec: &csv::StringRecord| rec.position().map(|p| p.line()).unwrap_or(i as u64 + 1);
        let rec = match rec {
            Ok(r) => r,
            Err(e) => {
                let l = e.position().map(|p| p.line()).unwrap_or(i as u64 + 1);
                errors.push(LineError {
                    line: l,
                    message: e.to_string(),
                });
                continue;
            }
        };
        let l = line(&rec);
        if rec.iter().all(str::is_empty) {
            continue;
        }
        if out.is_empty()
            && errors.is_empty()
            && header.is_none()
            && rec.get(0).is_some_and(|f| f.eq_ignore_ascii_case("mac"))
        {
            header = Some(rec.iter().map(|h| h.to_ascii_lowercase()).collect());
            continue;
        }
        match parse_row(&rec, header.as_deref()) {
            Ok((mac, spec)) => {
                if let Some(first) = seen.insert(mac, l) {
                    errors.push(LineError {
                        line: l,
                        message: format!("MAC {mac} already on line {first}"),
                    });
                } else {
                    out.push((mac, spec));
                }
            }
            Err(message) => errors.push(LineError {
                line: l,
                message: inventory::excerpt(&message, MAX_MESSAGE),
            }),
        }
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        let total = errors.len();
        let extra = total.saturating_sub(MAX_REPORTED);
        errors.truncate(MAX_REPORTED);
        if extra > 0 {
            errors.push(LineError {
                line: 0,
                message: format!("… and {extra} more problems"),
            });
        }
        Err(Problems {
            total,
            lines: errors,
        })
    }
}

fn nonempty(s: &str) -> Option<String> {
    (!s.is_empty()).then(|| s.to_string())
}

fn parse_row(
    rec: &csv::StringRecord,
    header: Option<&[String]>,
) -> Result<(Mac, MachineSpec), String> {
    let mac: Mac = rec
        .get(0)
        .unwrap_or("")
        .parse()
        .map_err(|e: inventory::Error| e.to_string())?;
    let mut spec = MachineSpec::default();
    match header {
        None => {
            spec.hostname = rec.get(1).and_then(nonempty);
            spec.profile = rec.get(2).and_then(nonempty);
            for field in rec.iter().skip(3).filter(|f| !f.is_empty()) {
                let (k, v) = field.split_once('=').ok_or_else(|| {
                    format!("label {field:?} is not key=value (columns after the 3rd are labels)")
                })?;
                spec.labels
                    .insert(k.trim().to_string(), v.trim().to_string());
            }
        }
        Some(names) => {
            if rec.len() > names.len() {
                return Err(format!(
                    "{} columns but the header has {}",
                    rec.len(),
                    names.len()
                ));
            }
            for (name, value) in names.iter().zip(rec.iter()).skip(1) {
                let v = nonempty(value);
                match name.as_str() {
                    "hostname" => spec.hostname = v,
                    "profile" => spec.profile = v,
                    "uuid" => spec.uuid = v,
                    "serial" => spec.serial = v,
                    "site" => spec.site = v,
                    "ip" => {
                        spec.ip = v
                            .map(|s| {
                                s.parse()
                                    .map_err(|_| format!("ip {s:?} is not an IPv4 address"))
                            })
                            .transpose()?
                    }
                    key => {
                        if let Some(v) = v {
                            spec.labels.insert(key.to_string(), v);
                        }
                    }
                }
            }
        }
    }
    let spec = spec.validate().map_err(|e| e.to_string())?;
    Ok((mac, spec))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positional_rows_with_labels() {
        let rows = parse(
            "# rack A\n52:54:00:00:00:01,node-1,hadron,rack=a1,role=worker\n\n5254.0000.0002,,\n",
        )
        .unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].1.hostname.as_deref(), Some("node-1"));
        assert_eq!(rows[0].1.profile.as_deref(), Some("hadron"));
        assert_eq!(rows[0].1.labels["role"], "worker");
        assert_eq!(rows[1].0.to_string(), "52:54:00:00:00:02");
        assert_eq!(rows[1].1, MachineSpec::default());
    }

    #[test]
    fn header_names_columns() {
        let rows = parse("mac,ip,hostname,rack\n52-54-00-00-00-01,198.18.0.20,n1,r7\n").unwrap();
        assert_eq!(rows[0].1.ip, Some("198.18.0.20".parse().unwrap()));
        assert_eq!(rows[0].1.labels["rack"], "r7");
    }

    #[test]
    fn every_bad_line_reported_by_number() {
        let text = "52:54:00:00:00:01,ok\nnot-a-mac,x\n52:54:00:00:00:01,dup\n52:54:00:00:00:03,bad_host\n52:54:00:00:00:04,h,p,nolabel\n";
        let problems = parse(text).unwrap_err();
        assert_eq!(problems.total, 4);
        let errs = problems.lines;
        let lines: Vec<u64> = errs.iter().map(|e| e.line).collect();
        assert_eq!(lines, vec![2, 3, 4, 5], "{errs:?}");
        assert!(errs[0].message.contains("\"not-a-mac\""));
        assert!(errs[1].message.contains("already on line 1"));
        assert!(errs[2].message.contains("hostname"));
        assert!(errs[3].message.contains("key=value"));
    }

    #[test]
    fn beyond_fifty_problems_the_total_is_still_counted() {
        let text: String = (0..60).map(|i| format!("zz:{i},,\n")).collect();
        let problems = parse(&text).unwrap_err();
        assert_eq!(problems.total, 60);
        assert_eq!(problems.lines.len(), MAX_REPORTED + 1);
        assert_eq!(
            problems.lines[MAX_REPORTED].message,
            "… and 10 more problems"
        );
    }
}
