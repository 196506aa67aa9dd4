//! The YAML parser on untrusted input (serde_norway, the maintained fork of serde_yaml):
//! manifests through [`crate::preview::parse_stream`] and policy files through
//! [`buildbot_policy::Policy::from_yaml`]. Hostile documents are refused with an error,
//! within bounded time and memory, never a crash.

use buildbot_policy::Policy;
use serde_json::Value;

use crate::output::{render, Format};
use crate::preview::{parse_stream, preview};

/// The "billion laughs": nine levels of nine aliases each expand to 9^9 (387 million) strings.
fn alias_bomb() -> String {
    let mut doc = String::from("a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n");
    for i in 1..9 {
        let p = i - 1;
        doc.push_str(&format!(
            "a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n"
        ));
    }
    doc
}

#[test]
fn an_alias_bomb_is_refused_not_expanded() {
    let manifest = format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: x}}\ndata:\n  {}",
        alias_bomb().replace('\n', "\n  ")
    );
    let e = parse_stream(&manifest, "bomb.yaml")
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("bomb.yaml: document 1: invalid YAML") && e.contains("repetition limit"),
        "{e}"
    );
    // A policy file is refused even sooner: its strict schema rejects the first unknown
    // field or wrong type before any alias is expanded.
    let in_policy = format!("recognition:\n  masterImages: *a8\n{}", alias_bomb());
    assert!(Policy::from_yaml(&alias_bomb()).is_err());
    assert!(Policy::from_yaml(&in_policy).is_err());
}

#[test]
fn a_few_aliases_still_work() {
    // Anchors and aliases are legitimate YAML (Helm users write them): a small expansion is fine.
    let doc = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: w\n  labels: &l {app: buildbot, tier: worker}\n  annotations: *l\nspec: {containers: [{name: w, image: buildbot/buildbot-worker}]}\n";
    let objects = parse_stream(doc, "aliases.yaml").unwrap();
    assert_eq!(objects[0]["metadata"]["annotations"]["tier"], "worker");
}

#[test]
fn deep_nesting_is_refused_quickly_without_overflowing_the_stack() {
    // Flow collections: refused by a linear scan before libyaml's quadratic scanner sees
    // them (100,000 levels of `{a: ` did not finish in ten minutes).
    for (open, close) in [("[", "]"), ("{a: ", "}")] {
        let deep = format!("{}1{}", open.repeat(100_000), close.repeat(100_000));
        let e = parse_stream(&deep, "deep.yaml").unwrap_err().to_string();
        assert!(
            e.contains("deep.yaml: line 1: collections nested more than 128 deep"),
            "{e}"
        );
        let e = Policy::from_yaml(&deep).unwrap_err().to_string();
        assert!(e.contains("nested more than 128 deep"), "{e}");
    }
    // Block collections: their indentation makes the input itself quadratic in the depth;
    // serde's recursion limit refuses them.
    let block: String = (0..1_000)
        .map(|i| format!("{}a:\n", " ".repeat(i)))
        .collect();
    let e = parse_stream(&block, "deep.yaml").unwrap_err().to_string();
    assert!(e.contains("recursion limit exceeded"), "{e}");
    assert!(Policy::from_yaml(&block).is_err());
    // Deep enough for any manifest is fine.
    let fine = format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: x}}\ndata: {{a: '{}'}}\nx: {}1{}\n",
        "[".repeat(500),
        "[".repeat(100),
        "]".repeat(100)
    );
    assert_eq!(parse_stream(&fine, "ok.yaml").unwrap().len(), 1);
}

#[test]
fn multi_document_streams_with_empty_documents() {
    let pod = "apiVersion: v1\nkind: Pod\nmetadata: {name: NAME}\nspec: {containers: [{name: c, image: nginx}]}\n";
    let stream = format!(
        "---\n---\n{}---\n\n---\n# only a comment\n---\n{}...\n---\n{}",
        pod.replace("NAME", "a"),
        pod.replace("NAME", "b"),
        pod.replace("NAME", "c")
    );
    let names: Vec<String> = parse_stream(&stream, "multi.yaml")
        .unwrap()
        .iter()
        .map(|o| o["metadata"]["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names, ["a", "b", "c"]);
    assert!(parse_stream("", "empty.yaml").unwrap().is_empty());
    assert!(parse_stream("---\n...\n", "empty.yaml").unwrap().is_empty());
}

/// The labels of the YAML 1.1 test and the strings they must stay.
const BOOLEAN_LABELS: [(&str, &str); 6] = [
    ("a", "on"),
    ("b", "yes"),
    ("c", "off"),
    ("d", "no"),
    ("e", "y"),
    ("f", "n"),
];

#[test]
fn yaml_1_1_booleans_in_label_values_stay_strings_and_are_written_back_quoted() {
    // YAML 1.2 (this parser) reads `on`, `yes`, `off`, `no`, `y` as strings, as a label value
    // must be. kubectl's parser is YAML 1.1, where they are booleans: so what preview prints
    // must quote them, or `kubectl apply` of our output would fail.
    let doc = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: w\n  labels: {app: buildbot, tier: worker, a: on, b: yes, c: off, d: no, e: y, f: n}\nspec: {containers: [{name: w, image: buildbot/buildbot-worker}]}\n";
    let objects = parse_stream(doc, "bools.yaml").unwrap();
    let labels = &objects[0]["metadata"]["labels"];
    for (k, v) in BOOLEAN_LABELS {
        assert_eq!(labels[k], Value::String(v.into()), "{k}");
    }
    let out = preview(doc, "bools.yaml", &Policy::default()).unwrap();
    let yaml = render(&[out[0].after.clone()], Format::Yaml);
    for (k, v) in BOOLEAN_LABELS {
        assert!(
            yaml.contains(&format!("{k}: '{v}'")),
            "{k}: {v} must be quoted:\n{yaml}"
        );
    }
    // An unquoted `true` is a boolean, which a label cannot be: a clear error.
    let e = preview(
        &doc.replace("a: on", "a: true"),
        "bools.yaml",
        &Policy::default(),
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("Pod/w") && e.contains("not a valid pod spec"),
        "{e}"
    );
}

#[test]
fn the_fuzz_corpus_parses_or_is_refused_without_a_panic() {
    // JSON is YAML: every input the webhook's fuzzers keep (reviews, pods, the two crashers
    // they found) goes through the YAML parser of manifests and of policy files too.
    let corpus = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../webhook/fuzz/corpus");
    let mut read = 0;
    for target in std::fs::read_dir(&corpus).unwrap() {
        for file in std::fs::read_dir(target.unwrap().path()).unwrap() {
            let bytes = std::fs::read(file.unwrap().path()).unwrap();
            let text = String::from_utf8_lossy(&bytes);
            let _ = parse_stream(&text, "corpus");
            let _ = Policy::from_yaml(&text);
            read += 1;
        }
    }
    assert!(read >= 10, "the corpus is there: {read} files");
}
