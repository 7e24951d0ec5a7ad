//! The Vectorize binding (`VECTORIZE`). workers-rs 0.8 has no wrapper, so the index's
//! `query(vector, options)` is bound directly.

use js_sys::{Float32Array, Promise, Reflect, JSON};
use serde_json::Value;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;
use worker::Env;

pub const BINDING: &str = "VECTORIZE";

#[wasm_bindgen]
extern "C" {
    /// A `VectorizeIndex` as workerd hands it to the Worker.
    #[derive(Clone)]
    pub type VectorizeIndex;

    #[wasm_bindgen(method, catch)]
    fn query(
        this: &VectorizeIndex,
        vector: &Float32Array,
        options: &JsValue,
    ) -> Result<Promise, JsValue>;
}

/// The index, if this Worker has the binding.
pub fn binding(env: &Env) -> Option<VectorizeIndex> {
    let value = Reflect::get(env.as_ref(), &JsValue::from_str(BINDING)).ok()?;
    if value.is_undefined() || value.is_null() {
        return None;
    }
    Some(value.unchecked_into())
}

/// `index.query(vector, {topK, returnMetadata: "all", namespace})`, answered as JSON:
/// `{"count": n, "matches": [{"id", "score", "metadata"}]}`. `namespace` is the caller's
/// account id: one account's vectors are never another's matches.
pub async fn query_index(
    index: &VectorizeIndex,
    vector: &[f32],
    top_k: usize,
    namespace: &str,
) -> Result<Value, String> {
    let options = serde_json::json!({
        "topK": top_k,
        "returnMetadata": "all",
        "namespace": namespace,
    });
    let options =
        JSON::parse(&options.to_string()).map_err(|e| format!("Vectorize options: {e:?}"))?;
    let vector = Float32Array::from(vector);
    let promise = index.query(&vector, &options).map_err(js_text)?;
    let answer = JsFuture::from(promise).await.map_err(js_text)?;
    let text: String = JSON::stringify(&answer).map_err(js_text)?.into();
    serde_json::from_str(&text).map_err(|e| format!("Vectorize answer: {e}"))
}

fn js_text(value: JsValue) -> String {
    value
        .dyn_ref::<js_sys::Error>()
        .map(|e| String::from(e.message()))
        .or_else(|| value.as_string())
        .unwrap_or_else(|| format!("{value:?}"))
}
