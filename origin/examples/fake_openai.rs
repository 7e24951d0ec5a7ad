//! The fake OpenAI-compatible provider of the tests as a process, for the pipeline benchmark:
//! `cargo run --release --example fake_openai -- 127.0.0.1:9300 [latency_ms]`

#[path = "../tests/common/fake_provider.rs"]
#[allow(dead_code)]
mod fake_provider;

#[tokio::main]
async fn main() {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:9300".into());
    let latency_ms = std::env::args()
        .nth(2)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let behavior = fake_provider::Behavior {
        latency_ms,
        ..fake_provider::Behavior::default()
    };
    let fake = fake_provider::FakeProvider::start_on(&addr, behavior).await;
    eprintln!("fake OpenAI-compatible provider at {}", fake.base_url);
    std::future::pending::<()>().await;
}
