//! Shared by the integration tests that talk to `radlens lm serve`: the SmolLM2 GGUF,
//! loaded once per test binary, and a server on a free loopback port.

use candle_core::Device;
use radlens_interp::serve::Server;
use radlens_lm::{LanguageModel, WeightFormat};
use std::sync::{Arc, OnceLock};

pub fn lm() -> Arc<LanguageModel> {
    static LM: OnceLock<Arc<LanguageModel>> = OnceLock::new();
    LM.get_or_init(|| {
        let path = radlens_testdata::shared_dir().join("models/SmolLM2-135M-Instruct.Q4_1.gguf");
        Arc::new(LanguageModel::load(path, &Device::Cpu, WeightFormat::F32).unwrap())
    })
    .clone()
}

/// Serves `server` on a free loopback port in its own runtime; returns the base URL.
pub fn serve(server: Server) -> String {
    let server = Arc::new(server);
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    listener.set_nonblocking(true).unwrap();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            axum::serve(listener, server.router()).await.unwrap();
        });
    });
    format!("http://{addr}/v1")
}
