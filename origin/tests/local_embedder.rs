//! The local embedder (all-MiniLM-L6-v2 in-process) against an independent implementation of
//! the same model (origin/tests/peers/minilm_reference.py, numpy; its output is
//! origin/tests/data/minilm_reference.json), the choice of embedder at start-up and what the
//! database records, and `heady-origin memory reembed` with its resume.
//!
//! The model comes from deploy/setup.sh (HEADY_EMBEDDER_MODEL_DIR, or its default folder); a
//! missing model fails these tests.

mod common;

use common::{owner_client, Answer, TestServer};
use heady_origin::app::App;
use heady_origin::config::{Config, EmbedderKind};
use heady_origin::memory::embedder::Embedder;
use heady_origin::memory::local::{LocalEmbedder, MiniLm, MAX_TOKENS, MODEL_NAME};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::Command;

const DIM: usize = 384;

fn model_dir() -> PathBuf {
    let dir = std::env::var_os("HEADY_EMBEDDER_MODEL_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").expect("HOME"))
                .join(".cache/heady/models/all-MiniLM-L6-v2")
        });
    assert!(
        dir.join("model.safetensors").is_file(),
        "the local model is not installed in {}: run deploy/setup.sh",
        dir.display()
    );
    dir
}

fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| *x as f64 * *y as f64).sum();
    let na: f64 = a.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    let nb: f64 = b.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    dot / (na * nb)
}

struct Reference {
    text: String,
    ids: Vec<u32>,
    embedding: Vec<f32>,
}

fn reference() -> Vec<Reference> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/minilm_reference.json");
    let v: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    assert_eq!(v["model"], MODEL_NAME);
    assert_eq!(v["max_length"], MAX_TOKENS);
    v["sentences"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| Reference {
            text: s["text"].as_str().unwrap().to_string(),
            ids: serde_json::from_value(s["ids"].clone()).unwrap(),
            embedding: serde_json::from_value(s["embedding"].clone()).unwrap(),
        })
        .collect()
}

#[tokio::test]
async fn local_embeddings_match_an_independent_implementation() {
    let refs = reference();
    assert!(refs.len() >= 8);
    assert!(
        refs.iter().any(|r| r.ids.len() == MAX_TOKENS),
        "one sentence is truncated"
    );
    let dir = model_dir();
    let model = MiniLm::load(&dir, DIM).unwrap();
    for r in &refs {
        assert_eq!(
            model.token_ids(&r.text).unwrap(),
            r.ids,
            "ids of {:?}",
            r.text
        );
    }
    let e = LocalEmbedder::start(&dir, DIM, 2).unwrap();
    assert_eq!((e.name(), e.model(), e.dim()), ("local", MODEL_NAME, DIM));
    let texts: Vec<String> = refs.iter().map(|r| r.text.clone()).collect();
    let mut one_by_one = Vec::new();
    for (r, t) in refs.iter().zip(&texts) {
        let v = e.embed(std::slice::from_ref(t)).await.unwrap().remove(0);
        assert_eq!(v.len(), DIM);
        let c = cosine(&v, &r.embedding);
        assert!(c >= 0.999, "cosine {c} for {:?}", r.text);
        let norm: f32 = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-4, "norm {norm}");
        one_by_one.push(v);
    }
    // One batch (padded to the longest) gives the same vectors, in order.
    let batched = e.embed(&texts).await.unwrap();
    assert_eq!(batched.len(), texts.len());
    for ((b, o), r) in batched.iter().zip(&one_by_one).zip(&refs) {
        let c = cosine(b, o);
        assert!(
            c >= 0.99999,
            "batched vs alone: cosine {c} for {:?}",
            r.text
        );
    }
    // Concurrent requests are merged into batches and each gets its own answer.
    let answers = futures_util::future::join_all(texts.iter().map(|t| {
        let e = &e;
        async move { e.embed(std::slice::from_ref(t)).await.unwrap().remove(0) }
    }))
    .await;
    for (a, o) in answers.iter().zip(&one_by_one) {
        assert!(cosine(a, o) >= 0.99999);
    }
    // The model knows synonyms the lexical embedder cannot.
    let v = e
        .embed(&["reset my password".into(), "I forgot my login".into()])
        .await
        .unwrap();
    assert!(cosine(&v[0], &v[1]) > 0.5);
    assert!(e.embed(&[]).await.unwrap().is_empty());
}

#[test]
fn a_missing_or_damaged_model_folder_is_an_error_naming_it() {
    let good = model_dir();
    let dir = tempfile::tempdir().unwrap();
    let msg = |d: &Path, dim: usize| match LocalEmbedder::start(d, dim, 1) {
        Ok(_) => panic!("loaded from {}", d.display()),
        Err(e) => e.to_string(),
    };
    let m = msg(dir.path(), DIM);
    assert!(
        m.contains(&dir.path().display().to_string()) && m.contains("config.json"),
        "{m}"
    );
    for f in ["config.json", "tokenizer.json"] {
        std::fs::copy(good.join(f), dir.path().join(f)).unwrap();
    }
    let m = msg(dir.path(), DIM);
    assert!(
        m.contains("model.safetensors") && m.contains("deploy/setup.sh"),
        "{m}"
    );
    std::fs::write(dir.path().join("model.safetensors"), b"not a model").unwrap();
    let m = msg(dir.path(), DIM);
    assert!(
        m.contains("model.safetensors") && m.contains("damaged"),
        "{m}"
    );
    std::fs::write(dir.path().join("tokenizer.json"), b"{").unwrap();
    let m = msg(dir.path(), DIM);
    assert!(m.contains("tokenizer.json") && m.contains("damaged"), "{m}");
    let m = msg(&good, 8);
    assert!(m.contains("384") && m.contains("memory.dim"), "{m}");
}

/// `POST path` with `body` as the owner: the answer's JSON, once it is 200.
async fn post_ok(s: &TestServer, path: &str, body: Value) -> Value {
    let a = Answer::of(owner_client().post(s.url(path)).json(&body)).await;
    assert_eq!(a.status, 200, "{path}: {}", a.text);
    a.body
}

async fn embeddings_model(s: &TestServer) -> String {
    let r = post_ok(s, "/v1/embeddings", json!({"input": "hello"})).await;
    r["model"].as_str().unwrap_or_default().to_string()
}

async fn insert(s: &TestServer, contents: &[&str]) {
    let items: Vec<Value> = contents.iter().map(|c| json!({"content": c})).collect();
    post_ok(s, "/api/memory/vectors", json!({ "items": items })).await;
}

async fn top_hit(s: &TestServer, text: &str) -> (String, f64) {
    let r = post_ok(s, "/api/memory/search", json!({"text": text, "top_k": 1})).await;
    let hit = &r["results"][0];
    (
        hit["content"].as_str().unwrap_or_default().to_string(),
        hit["score"].as_f64().unwrap_or(0.0),
    )
}

/// `App::open` in `dir` with `tweak`: the start-up error, if any.
async fn open_error(dir: &Path, tweak: impl FnOnce(&mut Config)) -> Option<String> {
    let mut cfg = Config::load(None, &[], &Default::default()).unwrap();
    cfg.data_dir = dir.to_path_buf();
    cfg.defense.enabled = false;
    tweak(&mut cfg);
    tokio::task::spawn_blocking(move || match App::open(cfg) {
        Ok(app) => {
            let _ = app.memory.close_blocking();
            None
        }
        Err(e) => Some(format!("{e:#}")),
    })
    .await
    .unwrap()
}

const ROWS: &[&str] = &[
    "I forgot my login",
    "the invoice was charged twice",
    "the deploy failed with a 502",
    "how do I rotate an API key",
];

#[tokio::test]
async fn auto_uses_the_installed_model_and_the_database_keeps_its_embedder() {
    let model = model_dir();
    // Auto with the model installed: local, recorded.
    let s = TestServer::start(|c| c.embedder.model_dir = Some(model.clone())).await;
    assert_eq!(embeddings_model(&s).await, MODEL_NAME);
    insert(&s, ROWS).await;
    let (content, score) = top_hit(&s, "reset my password").await;
    assert_eq!(content, "I forgot my login");
    assert!(score > 0.5, "{score}");
    let dir = s.stop().await;
    // An explicit other embedder is refused, naming both.
    let e = open_error(dir.path(), |c| c.embedder.kind = EmbedderKind::Lexical)
        .await
        .expect("lexical on a local database must be refused");
    assert!(
        e.contains("local (all-MiniLM-L6-v2")
            && e.contains("lexical (lexical")
            && e.contains("memory reembed"),
        "{e}"
    );
    // Auto keeps local; without the model that is an error naming the folder.
    let e = open_error(dir.path(), |c| {
        c.embedder.model_dir = Some("/nonexistent/minilm".into())
    })
    .await
    .expect("a local database needs its model");
    assert!(
        e.contains("/nonexistent/minilm") && e.contains("config.json"),
        "{e}"
    );

    // Auto without a model: lexical, and the log's reason names the folder.
    let s = TestServer::start(|c| c.embedder.model_dir = Some("/nonexistent/minilm".into())).await;
    assert_eq!(embeddings_model(&s).await, "lexical");
    insert(&s, ROWS).await;
    let dir = s.stop().await;
    // A database with lexical rows stays lexical under auto even once the model is there.
    let s = TestServer::start_in(dir, |c| c.embedder.model_dir = Some(model.clone())).await;
    assert_eq!(embeddings_model(&s).await, "lexical");
    let dir = s.stop().await;
    // An explicit local on it is refused.
    let e = open_error(dir.path(), |c| {
        c.embedder.kind = EmbedderKind::Local;
        c.embedder.model_dir = Some(model.clone());
    })
    .await
    .expect("local on a lexical database must be refused");
    assert!(
        e.contains("lexical (lexical") && e.contains("local (all-MiniLM-L6-v2"),
        "{e}"
    );
    // An explicit local with a bad folder: a start-up error naming it.
    let empty = tempfile::tempdir().unwrap();
    let e = open_error(empty.path(), |c| {
        c.embedder.kind = EmbedderKind::Local;
        c.embedder.model_dir = Some("/nonexistent/minilm".into());
    })
    .await
    .expect("a bad model folder must be refused");
    assert!(e.contains("/nonexistent/minilm"), "{e}");
}

#[tokio::test]
async fn a_database_from_before_the_record_is_lexical() {
    let s = TestServer::start(|c| c.embedder.kind = EmbedderKind::Lexical).await;
    insert(&s, ROWS).await;
    let dir = s.stop().await;
    {
        let conn = duckdb::Connection::open(dir.path().join("heady.duckdb")).unwrap();
        conn.execute_batch("DROP TABLE memory_meta").unwrap();
    }
    let s = TestServer::start_in(dir, |c| c.embedder.model_dir = Some(model_dir())).await;
    assert_eq!(embeddings_model(&s).await, "lexical");
    s.stop().await;
}

fn reembed(dir: &Path, extra: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_heady-origin"))
        .args(["memory", "reembed", "--data-dir"])
        .arg(dir)
        .args(extra)
        .env("HEADY_EMBEDDER_MODEL_DIR", model_dir())
        .env_remove("HEADY_EMBEDDER")
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

#[tokio::test]
async fn reembed_switches_a_database_and_resumes_after_an_interruption() {
    let model = model_dir();
    let s = TestServer::start(|c| c.embedder.kind = EmbedderKind::Lexical).await;
    s.wait_index().await;
    let mut contents: Vec<String> = (0..36).map(|i| format!("note {i} about billing")).collect();
    contents.extend(ROWS.iter().map(|r| r.to_string()));
    let refs: Vec<&str> = contents.iter().map(String::as_str).collect();
    insert(&s, &refs).await;
    let dir = s.stop().await;
    assert!(dir.path().join("hnsw.usearch").exists());

    let (code, out) = reembed(
        dir.path(),
        &["--to", "local", "--batch", "8", "--stop-after-batches", "2"],
    );
    assert_eq!(code, 3, "{out}");
    assert!(out.contains("16/40 rows"), "{out}");
    // Half done: the daemon refuses to start on mixed vectors.
    let e = open_error(dir.path(), |c| c.embedder.model_dir = Some(model.clone()))
        .await
        .expect("an unfinished re-embed must be refused");
    assert!(
        e.contains("has not finished") && e.contains("memory reembed"),
        "{e}"
    );
    // A run to another target is refused too.
    let (code, out) = reembed(dir.path(), &["--to", "lexical"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("has not finished"), "{out}");

    let (code, out) = reembed(dir.path(), &["--to", "local", "--batch", "8"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("resumed at row 16"), "{out}");
    assert!(
        out.contains("40/40 rows") && out.contains("rows/s") && out.contains("ETA"),
        "{out}"
    );
    assert!(
        !out.contains("8/40 rows"),
        "batches already done are not redone: {out}"
    );
    assert!(
        !dir.path().join("hnsw.usearch").exists(),
        "the old graph is gone"
    );
    let (code, out) = reembed(dir.path(), &["--to", "local"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("nothing to do"), "{out}");

    // Auto now runs local, and every stored vector is the model's: a row's own text finds it
    // with cosine 1.
    let s = TestServer::start_in(dir, |c| c.embedder.model_dir = Some(model.clone())).await;
    assert_eq!(embeddings_model(&s).await, MODEL_NAME);
    s.wait_index().await;
    for c in [
        contents[0].as_str(),
        contents[20].as_str(),
        "I forgot my login",
    ] {
        let (content, score) = top_hit(&s, c).await;
        assert_eq!(content, c);
        assert!((score - 1.0).abs() < 1e-3, "{c}: {score}");
    }
    assert_eq!(
        top_hit(&s, "reset my password").await.0,
        "I forgot my login"
    );
    let dir = s.stop().await;
    // And back to lexical in one go.
    let (code, out) = reembed(dir.path(), &["--to", "lexical", "--batch", "1000"]);
    assert_eq!(code, 0, "{out}");
    let s = TestServer::start_in(dir, |c| c.embedder.model_dir = Some(model.clone())).await;
    assert_eq!(embeddings_model(&s).await, "lexical");
    s.stop().await;
}
