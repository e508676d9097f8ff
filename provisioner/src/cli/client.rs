//! A small client for the operator API, used by the CLI subcommands.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context};
use reqwest::{Method, RequestBuilder, Response};
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::Global;
use crate::operator_token::TOKEN_FILE;

pub struct Client {
    http: reqwest::Client,
    base: String,
    token: String,
}

/// `--data-dir`, else `./data`.
pub fn data_dir(global: &Global) -> PathBuf {
    global
        .data_dir
        .clone()
        .unwrap_or_else(|| PathBuf::from("./data"))
}

fn read_token_file(path: &Path) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        anyhow!(
            "no API token: {} ({e}); pass --token or set PROVISIONER_TOKEN, or run on the server host \
             with --data-dir pointing at the server's data directory",
            path.display()
        )
    })?;
    Ok(text.trim().to_string())
}

impl Client {
    pub fn new(global: &Global) -> anyhow::Result<Self> {
        let token = match &global.token {
            Some(t) => t.trim().to_string(),
            None => read_token_file(&data_dir(global).join(TOKEN_FILE))?,
        };
        let base = global.url.trim_end_matches('/').to_string();
        if !base.starts_with("http://") && !base.starts_with("https://") {
            bail!("--url {base:?} must start with http:// or https://");
        }
        if base.starts_with("http://")
            && (global.ca_file.is_some() || global.ca_fingerprint.is_some())
        {
            bail!(
                "--ca-file/--ca-fingerprint (or PROVISIONER_CA/PROVISIONER_CA_FINGERPRINT) given, \
                 but --url {base} is plain HTTP: nothing would be checked and the token would \
                 cross the network in clear; use the server's https:// URL (tls.listen)"
            );
        }
        crate::tls_material::install_crypto_provider();
        let mut http = reqwest::Client::builder();
        if base.starts_with("https://") {
            let ca = data_dir(global)
                .join("tls")
                .join(crate::tls_material::CA_CERT);
            let tls = super::tls_trust::client_config(
                global.ca_fingerprint.as_deref(),
                global.ca_file.as_deref(),
                &ca,
            )?;
            if let Some(tls) = tls {
                http = http.tls_backend_preconfigured(tls);
            }
        }
        Ok(Client {
            http: http.build().context("building the HTTP client")?,
            base,
            token,
        })
    }

    pub fn request(&self, method: Method, path: &str) -> RequestBuilder {
        self.http
            .request(method, format!("{}/api/v1{path}", self.base))
            .bearer_auth(&self.token)
    }

    /// Sends and turns any non-2xx answer into an error carrying the server's detail.
    pub async fn send(&self, req: RequestBuilder) -> anyhow::Result<Response> {
        let resp = req.send().await.map_err(|e| {
            anyhow!(
                "cannot reach the provisioner API at {}: {}; is `provisioner serve` running? (set --url or PROVISIONER_URL)",
                self.base,
                super::tls_trust::error_chain(&e)
            )
        })?;
        if resp.status().is_success() {
            return Ok(resp);
        }
        let status = resp.status();
        let body = resp.text().await.unwrap_or_default();
        let Ok(v) = serde_json::from_str::<serde_json::Value>(&body) else {
            bail!("server answered {status}: {body}");
        };
        let mut msg = v["detail"].as_str().unwrap_or(&body).to_string();
        if let Some(lines) = v["lines"].as_array() {
            for l in lines {
                let n = l["line"].as_u64().unwrap_or(0);
                let m = l["message"].as_str().unwrap_or("");
                msg.push_str(&if n > 0 {
                    format!("\n  line {n}: {m}")
                } else {
                    format!("\n  {m}")
                });
            }
        }
        bail!("{msg} ({status})")
    }

    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> anyhow::Result<T> {
        let resp = self.send(self.request(Method::GET, path)).await?;
        resp.json().await.context("decoding the server's answer")
    }

    pub async fn send_json<B: Serialize, T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: &B,
    ) -> anyhow::Result<T> {
        let resp = self.send(self.request(method, path).json(body)).await?;
        resp.json().await.context("decoding the server's answer")
    }

    pub async fn post_text<T: DeserializeOwned>(
        &self,
        path: &str,
        body: String,
        content_type: &str,
    ) -> anyhow::Result<T> {
        let req = self
            .request(Method::POST, path)
            .header(reqwest::header::CONTENT_TYPE, content_type)
            .body(body);
        let resp = self.send(req).await?;
        resp.json().await.context("decoding the server's answer")
    }

    pub async fn delete(&self, path: &str) -> anyhow::Result<()> {
        self.send(self.request(Method::DELETE, path)).await?;
        Ok(())
    }

    /// Opens the SSE event stream after `after`.
    pub async fn event_stream(&self, query: &[(&str, String)]) -> anyhow::Result<Response> {
        let req = self
            .request(Method::GET, "/events/stream")
            .query(query)
            .header(reqwest::header::ACCEPT, "text/event-stream");
        self.send(req).await
    }
}
