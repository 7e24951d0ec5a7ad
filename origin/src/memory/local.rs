//! The local embedder: all-MiniLM-L6-v2 (a 6-layer BERT sentence encoder, 384 dimensions) run
//! in-process with candle and the `tokenizers` crate, from the folder deploy/setup.sh installs.
//! As sentence-transformers runs it: word pieces truncated at 256 (the model's
//! `max_seq_length`), the encoder, mean pooling over the real tokens, L2 normalisation.
//!
//! One embedding thread owns the model. Requests queue on a bounded channel; the thread merges
//! what is queued into batches of up to [`MAX_BATCH`] texts (of similar length, so padding
//! stays small) and answers each request through its own oneshot. The matrix products run on a
//! rayon pool of `embedder.threads` threads (one per core): two forwards at once would only
//! fight over the same cores.

use super::embedder::{EmbedError, EmbedFuture, Embedder};
use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::{BertModel, Config};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use tokenizers::{PaddingParams, PaddingStrategy, Tokenizer, TruncationParams};
use tokio::sync::{mpsc, oneshot};

/// The model's name: `/v1/embeddings` answers with it, usage and `memory_meta` record it.
pub const MODEL_NAME: &str = "all-MiniLM-L6-v2";
/// Inputs past this many word pieces (`[CLS]` and `[SEP]` included) are truncated.
pub const MAX_TOKENS: usize = 256;
/// Texts per forward pass.
pub const MAX_BATCH: usize = 32;
/// Requests waiting for the embedding thread before callers wait to queue.
const QUEUE: usize = 256;

const PROVIDER: &str = "local";

/// Why the model folder cannot be used. Every variant names the folder and the file.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("local embedding model: {dir} has no {file} (install the model with deploy/setup.sh and point embedder.model_dir / HEADY_EMBEDDER_MODEL_DIR at it)")]
    Missing { dir: PathBuf, file: &'static str },
    #[error("local embedding model: {dir}/{file} is damaged: {message}")]
    Damaged {
        dir: PathBuf,
        file: &'static str,
        message: String,
    },
    #[error("local embedding model: {dir}/config.json gives {got}-dimensional vectors; memory.dim is {want}")]
    Dimension {
        dir: PathBuf,
        got: usize,
        want: usize,
    },
    #[error("local embedding model: could not start its threads: {0}")]
    Thread(String),
}

/// The model and its tokenizer, loaded. Blocking; [`LocalEmbedder`] runs it on its own thread.
pub struct MiniLm {
    bert: BertModel,
    tokenizer: Tokenizer,
    dim: usize,
    /// sha256 of model.safetensors (hex).
    sha256: String,
}

impl MiniLm {
    /// Loads `dir`/{config.json, tokenizer.json, model.safetensors}; checks that the model
    /// gives `dim`-dimensional vectors.
    pub fn load(dir: &Path, dim: usize) -> Result<MiniLm, ModelError> {
        let read = |file: &'static str| -> Result<Vec<u8>, ModelError> {
            std::fs::read(dir.join(file)).map_err(|e| match e.kind() {
                std::io::ErrorKind::NotFound => ModelError::Missing {
                    dir: dir.to_path_buf(),
                    file,
                },
                _ => ModelError::Damaged {
                    dir: dir.to_path_buf(),
                    file,
                    message: e.to_string(),
                },
            })
        };
        let damaged = |file: &'static str, message: String| ModelError::Damaged {
            dir: dir.to_path_buf(),
            file,
            message,
        };
        let config: Config = serde_json::from_slice(&read("config.json")?)
            .map_err(|e| damaged("config.json", e.to_string()))?;
        if config.hidden_size != dim {
            return Err(ModelError::Dimension {
                dir: dir.to_path_buf(),
                got: config.hidden_size,
                want: dim,
            });
        }
        let mut tokenizer = Tokenizer::from_bytes(read("tokenizer.json")?)
            .map_err(|e| damaged("tokenizer.json", e.to_string()))?;
        // tokenizer.json ships truncation at 128 and fixed padding to 128: sentence-transformers
        // truncates at the model's max_seq_length (256) and pads to the batch's longest.
        tokenizer
            .with_truncation(Some(TruncationParams {
                max_length: MAX_TOKENS,
                ..Default::default()
            }))
            .map_err(|e| damaged("tokenizer.json", e.to_string()))?;
        tokenizer.with_padding(Some(PaddingParams {
            strategy: PaddingStrategy::BatchLongest,
            ..Default::default()
        }));
        let weights = read("model.safetensors")?;
        let sha256 = hex(&Sha256::digest(&weights));
        let vb = VarBuilder::from_buffered_safetensors(weights, DType::F32, &Device::Cpu)
            .map_err(|e| damaged("model.safetensors", e.to_string()))?;
        let bert = BertModel::load(vb, &config)
            .map_err(|e| damaged("model.safetensors", e.to_string()))?;
        Ok(MiniLm {
            bert,
            tokenizer,
            dim,
            sha256,
        })
    }

    pub fn sha256(&self) -> &str {
        &self.sha256
    }

    /// The word-piece ids of `text` as the model sees it (special tokens, truncation).
    pub fn token_ids(&self, text: &str) -> Result<Vec<u32>, String> {
        let e = self
            .tokenizer
            .encode(text, true)
            .map_err(|e| e.to_string())?;
        Ok(e.get_ids().to_vec())
    }

    /// One L2-normalised vector per text, in one forward pass (padded to the longest).
    pub fn encode(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, String> {
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        let enc = self
            .tokenizer
            .encode_batch(texts.to_vec(), true)
            .map_err(|e| e.to_string())?;
        let n = enc.len();
        let t = enc.first().map_or(0, |e| e.get_ids().len());
        let mut ids = Vec::with_capacity(n * t);
        let mut types = Vec::with_capacity(n * t);
        let mut mask = Vec::with_capacity(n * t);
        for e in &enc {
            ids.extend_from_slice(e.get_ids());
            types.extend_from_slice(e.get_type_ids());
            mask.extend_from_slice(e.get_attention_mask());
        }
        let run = || -> candle_core::Result<Vec<Vec<f32>>> {
            let dev = Device::Cpu;
            let ids = Tensor::from_vec(ids, (n, t), &dev)?;
            let types = Tensor::from_vec(types, (n, t), &dev)?;
            let mask = Tensor::from_vec(mask, (n, t), &dev)?;
            let hidden = self.bert.forward(&ids, &types, Some(&mask))?;
            // Mean over the real tokens, then unit length (sentence-transformers' Pooling
            // and Normalize modules).
            let m = mask.to_dtype(DType::F32)?.unsqueeze(2)?;
            let summed = hidden.broadcast_mul(&m)?.sum(1)?;
            let counts = m.sum(1)?.clamp(1e-9f32, f32::MAX)?;
            let mean = summed.broadcast_div(&counts)?;
            let norm = mean
                .sqr()?
                .sum_keepdim(1)?
                .sqrt()?
                .clamp(1e-12f32, f32::MAX)?;
            mean.broadcast_div(&norm)?.to_vec2::<f32>()
        };
        let out = run().map_err(|e| e.to_string())?;
        debug_assert!(out.iter().all(|v| v.len() == self.dim));
        Ok(out)
    }

    /// `texts` in forward passes of up to [`MAX_BATCH`], grouped by length so each pass
    /// pads little; the vectors come back in the order of `texts`.
    pub fn encode_many(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, String> {
        let mut order: Vec<usize> = (0..texts.len()).collect();
        order.sort_by_key(|&i| texts[i].len());
        let mut out = vec![Vec::new(); texts.len()];
        for chunk in order.chunks(MAX_BATCH) {
            let batch: Vec<&str> = chunk.iter().map(|&i| texts[i]).collect();
            for (&i, v) in chunk.iter().zip(self.encode(&batch)?) {
                out[i] = v;
            }
        }
        Ok(out)
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

struct Job {
    texts: Vec<String>,
    reply: oneshot::Sender<Result<Vec<Vec<f32>>, String>>,
}

/// [`MiniLm`] behind the [`Embedder`] trait, on its embedding thread.
pub struct LocalEmbedder {
    jobs: mpsc::Sender<Job>,
    dim: usize,
    sha256: String,
    dir: PathBuf,
}

impl LocalEmbedder {
    /// Loads the model from `dir` and starts the embedding thread, whose matrix products use
    /// `threads` threads. Blocking (reads ~90 MB). The thread ends when the embedder is
    /// dropped, after the batch it is running.
    pub fn start(dir: &Path, dim: usize, threads: usize) -> Result<LocalEmbedder, ModelError> {
        let model = MiniLm::load(dir, dim)?;
        let sha256 = model.sha256.clone();
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads.max(1))
            .thread_name(|i| format!("heady-embed-{i}"))
            .build()
            .map_err(|e| ModelError::Thread(e.to_string()))?;
        let (tx, rx) = mpsc::channel(QUEUE);
        std::thread::Builder::new()
            .name("heady-embedder".into())
            .spawn(move || serve(&model, &pool, rx))
            .map_err(|e| ModelError::Thread(e.to_string()))?;
        Ok(LocalEmbedder {
            jobs: tx,
            dim,
            sha256,
            dir: dir.to_path_buf(),
        })
    }

    /// The folder the model was loaded from.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

/// The embedding thread: takes a request, merges the ones queued behind it up to
/// [`MAX_BATCH`] texts, encodes them together and answers each.
fn serve(model: &MiniLm, pool: &rayon::ThreadPool, mut rx: mpsc::Receiver<Job>) {
    while let Some(first) = rx.blocking_recv() {
        let mut n = first.texts.len();
        let mut jobs = vec![first];
        while n < MAX_BATCH {
            match rx.try_recv() {
                Ok(job) => {
                    n += job.texts.len();
                    jobs.push(job);
                }
                Err(_) => break,
            }
        }
        let texts: Vec<&str> = jobs
            .iter()
            .flat_map(|j| j.texts.iter().map(String::as_str))
            .collect();
        match pool.install(|| model.encode_many(&texts)) {
            Ok(mut vectors) => {
                // Hand each request its own slice, in order.
                for job in jobs.into_iter().rev() {
                    let mine = vectors.split_off(vectors.len() - job.texts.len());
                    let _ = job.reply.send(Ok(mine));
                }
            }
            Err(e) => {
                for job in jobs {
                    let _ = job.reply.send(Err(e.clone()));
                }
            }
        }
    }
}

impl Embedder for LocalEmbedder {
    fn name(&self) -> &'static str {
        "local"
    }
    fn model(&self) -> &str {
        MODEL_NAME
    }
    fn dim(&self) -> usize {
        self.dim
    }
    fn fingerprint(&self) -> Option<&str> {
        Some(&self.sha256)
    }
    fn embed<'a>(&'a self, texts: &'a [String]) -> EmbedFuture<'a> {
        Box::pin(async move {
            if texts.is_empty() {
                return Ok(Vec::new());
            }
            let gone = || EmbedError::Unreachable {
                provider: PROVIDER,
                message: "the embedding thread has stopped".into(),
            };
            let (reply, answer) = oneshot::channel();
            self.jobs
                .send(Job {
                    texts: texts.to_vec(),
                    reply,
                })
                .await
                .map_err(|_| gone())?;
            answer
                .await
                .map_err(|_| gone())?
                .map_err(|message| EmbedError::BadResponse {
                    provider: PROVIDER,
                    message,
                })
        })
    }
}
