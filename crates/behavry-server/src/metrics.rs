//! Prometheus metrics: request counts and latency histograms per route
//! template (never the raw path, which would explode cardinality).

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;

use crate::state::AppState;

const BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];

#[derive(Default)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    sum: f64,
    count: u64,
}

#[derive(Default)]
pub struct Metrics {
    requests: Mutex<BTreeMap<(String, String, u16), u64>>,
    latency: Mutex<BTreeMap<(String, String), Histogram>>,
}

impl Metrics {
    pub fn observe(&self, method: &str, route: &str, status: u16, seconds: f64) {
        {
            let mut requests = self.requests.lock().unwrap_or_else(|p| p.into_inner());
            *requests
                .entry((method.to_string(), route.to_string(), status))
                .or_default() += 1;
        }
        let mut latency = self.latency.lock().unwrap_or_else(|p| p.into_inner());
        let h = latency
            .entry((method.to_string(), route.to_string()))
            .or_default();
        for (i, bound) in BUCKETS.iter().enumerate() {
            if seconds <= *bound {
                h.counts[i] += 1;
            }
        }
        h.sum += seconds;
        h.count += 1;
    }

    /// Renders the text exposition format.
    pub fn render(&self, version: &str, build_sha: Option<&str>, uptime_seconds: f64) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "# HELP behavry_build_info Build information.");
        let _ = writeln!(out, "# TYPE behavry_build_info gauge");
        let _ = writeln!(
            out,
            "behavry_build_info{{version=\"{}\",build_sha=\"{}\"}} 1",
            escape(version),
            escape(build_sha.unwrap_or("unknown"))
        );
        let _ = writeln!(
            out,
            "# HELP behavry_uptime_seconds Seconds since the process started."
        );
        let _ = writeln!(out, "# TYPE behavry_uptime_seconds gauge");
        let _ = writeln!(out, "behavry_uptime_seconds {uptime_seconds:.3}");

        let _ = writeln!(
            out,
            "# HELP behavry_http_requests_total HTTP requests by route template and status."
        );
        let _ = writeln!(out, "# TYPE behavry_http_requests_total counter");
        for ((method, route, status), n) in self
            .requests
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
        {
            let _ = writeln!(
                out,
                "behavry_http_requests_total{{method=\"{}\",route=\"{}\",status=\"{status}\"}} {n}",
                escape(method),
                escape(route)
            );
        }

        let _ = writeln!(
            out,
            "# HELP behavry_http_request_duration_seconds HTTP request latency by route template."
        );
        let _ = writeln!(
            out,
            "# TYPE behavry_http_request_duration_seconds histogram"
        );
        for ((method, route), h) in self
            .latency
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
        {
            let labels = format!("method=\"{}\",route=\"{}\"", escape(method), escape(route));
            for (i, bound) in BUCKETS.iter().enumerate() {
                let _ = writeln!(
                    out,
                    "behavry_http_request_duration_seconds_bucket{{{labels},le=\"{bound}\"}} {}",
                    h.counts[i]
                );
            }
            let _ = writeln!(
                out,
                "behavry_http_request_duration_seconds_bucket{{{labels},le=\"+Inf\"}} {}",
                h.count
            );
            let _ = writeln!(
                out,
                "behavry_http_request_duration_seconds_sum{{{labels}}} {}",
                h.sum
            );
            let _ = writeln!(
                out,
                "behavry_http_request_duration_seconds_count{{{labels}}} {}",
                h.count
            );
        }
        out
    }
}

fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Middleware recording every request under its matched route template.
pub async fn track(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let start = Instant::now();
    let method = request.method().as_str().to_string();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "unmatched".to_string());
    let response = next.run(request).await;
    state.metrics.observe(
        &method,
        &route,
        response.status().as_u16(),
        start.elapsed().as_secs_f64(),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_and_cumulative_buckets() {
        let m = Metrics::default();
        m.observe("GET", "/health/live", 200, 0.0004);
        m.observe("GET", "/health/live", 200, 0.2);
        let text = m.render("0.1.0", None, 1.0);
        assert!(text.contains(
            "behavry_http_requests_total{method=\"GET\",route=\"/health/live\",status=\"200\"} 2"
        ));
        assert!(text.contains(
            "behavry_http_request_duration_seconds_bucket{method=\"GET\",route=\"/health/live\",le=\"0.0005\"} 1"
        ));
        assert!(text.contains(
            "behavry_http_request_duration_seconds_bucket{method=\"GET\",route=\"/health/live\",le=\"0.25\"} 2"
        ));
        assert!(text.contains(
            "behavry_http_request_duration_seconds_count{method=\"GET\",route=\"/health/live\"} 2"
        ));
    }
}
