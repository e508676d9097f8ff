//! What the Kairos agent takes as a config: a body whose first line is exactly `#cloud-config`
//! followed by one YAML document whose top level is a mapping, with no key twice in a mapping.
//! The agent replaces any other `config_url` body with an empty config, without an error, so the
//! install never starts and nobody learns why; so every rendered config is checked
//! ([`check`]): when a profile is saved (for a sample machine) and at `/config` (for the real one).
//!
//! YAML is read as a stream of events with `saphyr-parser` (YAML 1.2, pure Rust): no tree is
//! built, so an alias is never expanded (a "billion laughs" document costs only its own length),
//! and the parser refuses nesting past its own depth limit instead of using up the stack. Duplicate keys are refused as Go's YAML decoders (the Kairos
//! agent's) refuse them.

use std::collections::HashSet;

use saphyr_parser::{Event, Parser, ScalarStyle};

/// The first line a Kairos config must have, exactly.
pub const HEADER: &str = "#cloud-config";

/// Where the parser is, one frame per open collection.
enum Frame {
    Sequence,
    /// `keys` seen so far, by text (as go-yaml v3 compares them: `foo` and `"foo"` are one
    /// key); `at_key`: the next node is a key, not a value.
    Mapping {
        keys: HashSet<String>,
        at_key: bool,
    },
}

/// Checks that `config` is a `#cloud-config` YAML mapping. `Err` says what is wrong, for the
/// operator (with the line where there is one), without the advice ([`RenderError`] adds it).
///
/// [`RenderError`]: super::config_render::RenderError
/// Aliases a config may use: go-yaml v3 (the Kairos agent) refuses "excessive aliasing", and a
/// cloud-config has no need for many.
pub const MAX_ALIASES: usize = 100;

pub fn check(config: &str) -> Result<(), String> {
    let first = config.split('\n').next().unwrap_or_default();
    if first != HEADER {
        return Err(if config.trim().is_empty() {
            "it is empty".to_string()
        } else {
            format!(
                "its first line is {:?}, not exactly {HEADER:?}",
                inventory::excerpt(first, 80)
            )
        });
    }
    let mut stack: Vec<Frame> = Vec::new();
    let mut documents = 0usize;
    let mut aliases = 0usize;
    // Anchored collections open now (their anchor ids), and anchors whose value holds an
    // alias: an alias to one of those is aliasing of aliases, the "billion laughs" shape.
    let mut open_anchors: Vec<Option<usize>> = Vec::new();
    let mut nested: HashSet<usize> = HashSet::new();
    for event in Parser::new_from_str(config) {
        let (event, span) = event.map_err(|e| format!("it is not valid YAML: {e}"))?;
        let line = span.start.line();
        match event {
            Event::DocumentStart(_) => {
                documents += 1;
                if documents > 1 {
                    return Err(format!(
                        "it holds a second YAML document (line {line}); the agent reads only \
                         the first, so put everything in one mapping"
                    ));
                }
            }
            Event::MappingStart(anchor, _) => {
                node(&mut stack, None, line, "a mapping")?;
                open_anchors.push((anchor != 0).then_some(anchor));
                stack.push(Frame::Mapping {
                    keys: HashSet::new(),
                    at_key: true,
                });
            }
            Event::SequenceStart(anchor, _) => {
                node(&mut stack, None, line, "a list")?;
                open_anchors.push((anchor != 0).then_some(anchor));
                stack.push(Frame::Sequence);
            }
            Event::Scalar(text, style, ..) => {
                let what = if style == ScalarStyle::Plain && text.is_empty() {
                    "empty"
                } else {
                    "a single value"
                };
                // The Kairos agent (go-yaml v3) compares keys by kind and text, not by quoting
                // style: `foo` and `"foo"` are the same key to it.
                node(&mut stack, Some(text.into_owned()), line, what)?;
            }
            // An alias as a key cannot be compared without expanding it: taken as unique.
            Event::Alias(target) => {
                aliases += 1;
                if nested.contains(&target) {
                    return Err(format!(
                        "it aliases a value that itself holds aliases (line {line}); the agent \
                         refuses such excessive aliasing, so write the values out"
                    ));
                }
                nested.extend(open_anchors.iter().flatten().copied());
                if aliases > MAX_ALIASES {
                    return Err(format!(
                        "it uses more than {MAX_ALIASES} aliases (line {line}); the agent refuses \
                         excessive aliasing, so write the values out"
                    ));
                }
                node(&mut stack, None, line, "an alias")?
            }
            Event::MappingEnd | Event::SequenceEnd => {
                stack.pop();
                open_anchors.pop();
            }
            Event::StreamStart | Event::StreamEnd | Event::DocumentEnd | Event::Nothing => {}
        }
    }
    if documents == 0 {
        return Err(format!("it holds no YAML after the {HEADER} line"));
    }
    Ok(())
}

/// One node (`key`: its text, when it is a scalar) in the collection on top of `stack`; at the
/// top level it must be a mapping (`what` names what it is instead).
fn node(stack: &mut [Frame], key: Option<String>, line: usize, what: &str) -> Result<(), String> {
    match stack.last_mut() {
        None if what == "a mapping" => Ok(()),
        None => Err(format!(
            "its top level (line {line}) is {what}, not a mapping of `key: value` entries"
        )),
        Some(Frame::Sequence) => Ok(()),
        Some(Frame::Mapping { keys, at_key }) => {
            if *at_key {
                if matches!(what, "a mapping" | "a list") {
                    return Err(format!(
                        "a key at line {line} is {what}; cloud-config keys are plain names"
                    ));
                }
                if let Some(k) = key {
                    if let Some(dup) = keys.replace(k) {
                        return Err(format!(
                            "key {:?} appears twice in one mapping (again at line {line})",
                            inventory::excerpt(&dup, 80)
                        ));
                    }
                }
            }
            *at_key = !*at_key;
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::check;

    #[test]
    fn a_cloud_config_mapping_passes() {
        for ok in [
            "#cloud-config\nhostname: a\ninstall:\n  device: /dev/sda\n  auto: true\n",
            "#cloud-config\n{hostname: a}\n",
            "#cloud-config\n---\nhostname: a\n...\n",
            "#cloud-config\n# a comment\nusers:\n- name: a\n  groups: [a, b]\n- name: b\n  groups: [a, b]\n",
            // The same key in different mappings.
            "#cloud-config\na: {x: 1}\nb: {x: 1}\n",
            // Anchors and aliases are fine and never expanded.
            "#cloud-config\na: &x [1, 2]\nb: *x\n",
        ] {
            assert_eq!(check(ok), Ok(()), "{ok:?}");
        }
    }

    #[test]
    fn the_issue_template_has_no_header() {
        let e = check("install:\n  device: /dev/sda\n  auto: true\n").unwrap_err();
        assert_eq!(
            e,
            "its first line is \"install:\", not exactly \"#cloud-config\""
        );
    }

    #[test]
    fn header_must_be_exact() {
        for bad in [
            "#cloud-config \na: 1\n",
            "#cloud-config\r\na: 1\n",
            "# cloud-config\na: 1\n",
            " #cloud-config\na: 1\n",
            "#Cloud-Config\na: 1\n",
            "\n#cloud-config\na: 1\n",
            "#!ipxe\n",
        ] {
            let e = check(bad).unwrap_err();
            assert!(e.starts_with("its first line is"), "{bad:?}: {e}");
        }
        assert_eq!(check("").unwrap_err(), "it is empty");
        assert_eq!(check("  \n").unwrap_err(), "it is empty");
    }

    #[test]
    fn the_top_level_must_be_a_mapping() {
        let cases = [
            (
                "#cloud-config\n",
                "it holds no YAML after the #cloud-config line",
            ),
            (
                "#cloud-config\n- a\n- b\n",
                "its top level (line 2) is a list, not a mapping of `key: value` entries",
            ),
            (
                "#cloud-config\njust text\n",
                "its top level (line 2) is a single value, not a mapping of `key: value` entries",
            ),
            (
                "#cloud-config\n---\n",
                "its top level (line 3) is empty, not a mapping of `key: value` entries",
            ),
        ];
        for (bad, want) in cases {
            assert_eq!(check(bad).unwrap_err(), want, "{bad:?}");
        }
    }

    #[test]
    fn invalid_yaml_duplicate_keys_and_second_documents_are_refused() {
        let e = check("#cloud-config\nrack: r1: \"x\"\n").unwrap_err();
        assert!(e.starts_with("it is not valid YAML: "), "{e}");
        assert!(e.contains("line 2"), "{e}");
        let e = check("#cloud-config\ninstall:\n  auto: true\n  auto: false\n").unwrap_err();
        assert_eq!(
            e,
            "key \"auto\" appears twice in one mapping (again at line 4)"
        );
        let e = check("#cloud-config\ninstall: {}\nhostname: a\ninstall: {}\n").unwrap_err();
        assert!(e.starts_with("key \"install\" appears twice"), "{e}");
        // Keys are compared by text, whatever their quoting (as the agent's go-yaml does).
        for twice in [
            "#cloud-config\nfoo: 1\n\"foo\": 2\n",
            "#cloud-config\nfoo: 1\n'foo': 2\n",
            "#cloud-config\nb: {b: 1, \"b\": 2}\n",
            "#cloud-config\ninstall:\n  device: /dev/sda\n  \"device\": /dev/sdb\n",
        ] {
            let e = check(twice).unwrap_err();
            assert!(e.contains("appears twice"), "{twice:?}: {e}");
        }
        // A key that is a list or a mapping.
        let e = check("#cloud-config\n? [a, b]\n: 1\n").unwrap_err();
        assert!(e.contains("cloud-config keys are plain names"), "{e}");
        let e = check("#cloud-config\na: 1\n---\nb: 2\n").unwrap_err();
        assert!(
            e.starts_with("it holds a second YAML document (line 3)"),
            "{e}"
        );
    }

    #[test]
    #[allow(clippy::disallowed_methods)] // measures that the check takes no time
    fn aliases_are_not_expanded() {
        // Nine levels of ten aliases each: 10^9 nodes if expanded; checked at its own size.
        let mut doc = String::from("#cloud-config\na0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..10 {
            let p = i - 1;
            doc.push_str(&format!(
                "a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n"
            ));
        }
        let started = std::time::Instant::now();
        // Refused (go-yaml v3 would refuse it too: "excessive aliasing"), quickly.
        let e = check(&doc).unwrap_err();
        assert!(e.contains("itself holds aliases"), "{e}");
        let flat = format!(
            "#cloud-config\na: &x 1\nb: [{}]\n",
            vec!["*x"; 101].join(", ")
        );
        let e = check(&flat).unwrap_err();
        assert!(e.contains("more than 100 aliases"), "{e}");
        assert!(started.elapsed() < std::time::Duration::from_secs(1));
        // Deep nesting is refused by the parser's own limit, never a stack overflow.
        let deep = format!(
            "#cloud-config\na: {}{}\n",
            "[".repeat(100_000),
            "]".repeat(100_000)
        );
        let e = check(&deep).unwrap_err();
        assert!(e.contains("recursion limit exceeded"), "{e}");
        let fine = format!("#cloud-config\na: {}{}\n", "[".repeat(50), "]".repeat(50));
        assert_eq!(check(&fine), Ok(()));
    }
}
