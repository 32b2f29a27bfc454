//! A real headless Chromium driven over the WebDriver JSON protocol (reqwest, no WebDriver
//! crate): Debian's `chromium` and `chromium-driver`. Tests fail (do not skip) without them.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use base64::Engine;
use serde_json::{Value, json};

pub const CHROMIUM: &str = "/usr/bin/chromium";
pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

pub struct Browser {
    http: reqwest::Client,
    base: String,
    _driver: tokio::process::Child,
}

impl Browser {
    pub async fn start() -> Browser {
        for tool in [CHROMIUM, CHROMEDRIVER] {
            assert!(
                std::path::Path::new(tool).exists(),
                "{tool} is missing: apt-get install -y chromium chromium-driver"
            );
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let driver = tokio::process::Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("chromedriver starts");
        let http = reqwest::Client::new();
        let base = format!("http://127.0.0.1:{port}");
        for _ in 0..100 {
            if let Ok(r) = http.get(format!("{base}/status")).send().await
                && r.status().is_success()
            {
                return Browser {
                    http,
                    base,
                    _driver: driver,
                };
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("chromedriver did not answer on {base}");
    }

    pub async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        let value: Value = response.json().await.unwrap();
        assert!(status.is_success(), "WebDriver {path}: {status} {value}");
        value["value"].clone()
    }

    pub async fn session(&self) -> String {
        self.session_sized(1440, 1000).await
    }

    /// A session whose window (the viewport, headless) is `width` × `height` CSS pixels.
    pub async fn session_sized(&self, width: u32, height: u32) -> String {
        let capabilities = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                         "--disable-dev-shm-usage", "--hide-scrollbars",
                         format!("--window-size={width},{height}")]
            }
        }}});
        let value = self
            .call(reqwest::Method::POST, "/session", Some(capabilities))
            .await;
        value["sessionId"].as_str().unwrap().to_owned()
    }

    /// Sets the viewport (what a screenshot captures) to exactly `width` × `height`: a
    /// headless window's size includes its (invisible) browser frame.
    pub async fn set_viewport(&self, session: &str, width: u32, height: u32) {
        self.call(
            reqwest::Method::POST,
            &format!("/session/{session}/goog/cdp/execute"),
            Some(
                json!({"cmd": "Emulation.setDeviceMetricsOverride", "params": {
                    "width": width, "height": height, "deviceScaleFactor": 1, "mobile": false
                }}),
            ),
        )
        .await;
    }

    pub async fn open(&self, session: &str, url: &str) {
        self.call(
            reqwest::Method::POST,
            &format!("/session/{session}/url"),
            Some(json!({ "url": url })),
        )
        .await;
    }

    pub async fn end(&self, session: &str) {
        self.call(
            reqwest::Method::DELETE,
            &format!("/session/{session}"),
            None,
        )
        .await;
    }

    pub async fn script(&self, session: &str, script: &str, args: Value) -> Value {
        self.call(
            reqwest::Method::POST,
            &format!("/session/{session}/execute/sync"),
            Some(json!({"script": script, "args": args})),
        )
        .await
    }

    /// Waits until `selector` matches an element; returns its text.
    pub async fn wait_for(&self, session: &str, selector: &str) -> String {
        let script =
            "const e = document.querySelector(arguments[0]); return e ? e.innerText : null;";
        for _ in 0..300 {
            let found = self.script(session, script, json!([selector])).await;
            if let Some(text) = found.as_str() {
                return text.to_owned();
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let body = self
            .script(session, "return document.body.innerText", json!([]))
            .await;
        panic!(
            "`{selector}` never appeared; page:\n{}",
            body.as_str().unwrap_or("")
        );
    }

    /// Scrolls the element with id `id` into view, then takes a screenshot.
    pub async fn screenshot_at(&self, session: &str, id: &str, name: &str) -> PathBuf {
        self.script(
            session,
            "document.getElementById(arguments[0]).scrollIntoView()",
            json!([id]),
        )
        .await;
        self.screenshot(session, name).await
    }

    pub async fn screenshot(&self, session: &str, name: &str) -> PathBuf {
        let png = self
            .call(
                reqwest::Method::GET,
                &format!("/session/{session}/screenshot"),
                None,
            )
            .await;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(png.as_str().unwrap())
            .unwrap();
        let dir = std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target"))
            .join("test-output");
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(name);
        std::fs::write(&path, bytes).unwrap();
        path
    }
}
