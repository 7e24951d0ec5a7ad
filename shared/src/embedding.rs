//! The default embedding model: Workers AI runs it at the edge, the Vectorize index is built
//! for its vectors, and the origin's Workers AI embedder and memory default to it.

/// Workers AI's name for BAAI bge-small-en-v1.5.
pub const DEFAULT_MODEL: &str = "@cf/baai/bge-small-en-v1.5";
/// Dimensions of [`DEFAULT_MODEL`]'s vectors: the Vectorize index's and the origin's default
/// `memory.dim`.
pub const DEFAULT_DIMENSIONS: usize = 384;
