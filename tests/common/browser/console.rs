//! What the harness asks chromedriver for outside fantoccini's commands:
//! the browser console's log (to fail on errors), permissions and the
//! clipboard.

use serde_json::{Value, json};

use super::Browser;

impl Browser {
    /// The console's errors (level SEVERE: script errors, failed loads, CSP
    /// violations) since the session started, as `source: message`.
    pub async fn console_errors(&self) -> Vec<String> {
        match self.read_console().await {
            Ok(errors) => errors,
            Err(e) => panic!("{e}"),
        }
    }

    /// Grants the page a permission (`clipboard-read`, …) through
    /// WebDriver's Set Permission (`POST /session/{id}/permissions`).
    pub async fn grant(&self, permission: &str) {
        let body = json!({"descriptor": {"name": permission}, "state": "granted"});
        let answer = self.driver_post("permissions", &body).await;
        if let Err(e) = answer {
            self.fail(&format!("granting {permission}: {e}")).await;
        }
    }

    /// The clipboard's text (granting `clipboard-read` first).
    pub async fn clipboard(&self) -> String {
        self.grant("clipboard-read").await;
        let script = "const done = arguments[arguments.length - 1];
            navigator.clipboard.readText().then(done, e => done({error: String(e)}));";
        match self.client.execute_async(script, vec![]).await {
            Ok(Value::String(text)) => text,
            Ok(other) => self.fail(&format!("reading the clipboard: {other}")).await,
            Err(e) => self.fail(&format!("reading the clipboard: {e}")).await,
        }
    }

    /// POSTs `body` to chromedriver's `session/{id}/{command}`, for the
    /// commands fantoccini does not make; the answer's `value`.
    async fn driver_post(&self, command: &str, body: &Value) -> Result<Value, String> {
        let id = self.client.session_id().await.map_err(|e| e.to_string())?;
        let url = format!(
            "{}session/{}/{command}",
            self.driver.url,
            id.unwrap_or_default()
        );
        let answer = self
            .driver
            .http
            .post(&url)
            .json(body)
            .send()
            .await
            .map_err(|e| format!("chromedriver's {command}: {e}"))?;
        let status = answer.status();
        let mut body: Value = answer
            .json()
            .await
            .map_err(|e| format!("chromedriver's {command}: {e}"))?;
        if !status.is_success() {
            return Err(format!("chromedriver's {command}: {status} {body}"));
        }
        Ok(body["value"].take())
    }

    /// Adds the entries chromedriver has not handed out yet (its
    /// `POST /session/{id}/se/log {"type":"browser"}`, outside W3C, forgets
    /// what it returns) to those seen; returns the SEVERE ones.
    pub(super) async fn read_console(&self) -> Result<Vec<String>, String> {
        let log = self
            .driver_post("se/log", &json!({"type": "browser"}))
            .await?;
        let Value::Array(fresh) = log else {
            return Err(format!("chromedriver's browser log is not a list: {log}"));
        };
        let mut seen = self.console.lock().expect("console lock");
        seen.extend(fresh);
        Ok(seen
            .iter()
            .filter(|e| e["level"] == "SEVERE")
            .map(|e| format!("{}: {}", e["source"].as_str().unwrap_or("?"), e["message"]))
            .collect())
    }

    /// Fails the test if the console logged an error that contains none of
    /// `allowed` (e.g. `"status of 401"` where a test provokes one).
    pub async fn assert_no_console_errors(&self, allowed: &[&str]) {
        let errors: Vec<String> = self
            .console_errors()
            .await
            .into_iter()
            .filter(|e| !allowed.iter().any(|a| e.contains(a)))
            .collect();
        if !errors.is_empty() {
            self.fail(&format!(
                "the console logged errors:\n  {}",
                errors.join("\n  ")
            ))
            .await;
        }
    }
}
