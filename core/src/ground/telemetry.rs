//! Logging and tracing shared by binaries and tests: JSON lines in
//! production, pretty text for people; `RUST_LOG` filters (default `info`).
//! When `OTEL_EXPORTER_OTLP_ENDPOINT` is set, spans are also exported over
//! OTLP/HTTP (protobuf) to `<endpoint>/v1/traces`, service name from
//! `OTEL_SERVICE_NAME` or the binary's.

use std::str::FromStr;

use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use crate::domain::trace::TraceContext;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Json,
    Pretty,
}

impl FromStr for LogFormat {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "json" => Ok(Self::Json),
            "pretty" | "text" => Ok(Self::Pretty),
            _ => Err(()),
        }
    }
}

/// Flushes and stops span export when dropped (keep it for the process's life).
#[must_use = "dropping the guard stops span export"]
pub struct TelemetryGuard {
    provider: Option<SdkTracerProvider>,
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        if let Some(p) = self.provider.take() {
            if let Err(e) = p.shutdown() {
                eprintln!("telemetry: flushing spans failed: {e}");
            }
        }
    }
}

fn otlp_provider(service: &str) -> Option<SdkTracerProvider> {
    std::env::var("OTEL_EXPORTER_OTLP_ENDPOINT")
        .ok()
        .filter(|e| !e.trim().is_empty())?;
    // The exporter reads OTEL_EXPORTER_OTLP_ENDPOINT (and _HEADERS, _TIMEOUT) itself.
    let exporter = match opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .build()
    {
        Ok(e) => e,
        Err(e) => {
            eprintln!("telemetry: OTLP export disabled: {e}");
            return None;
        }
    };
    let name = std::env::var("OTEL_SERVICE_NAME").unwrap_or_else(|_| service.to_string());
    let resource = opentelemetry_sdk::Resource::builder()
        .with_service_name(name)
        .build();
    Some(
        SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_resource(resource)
            .build(),
    )
}

/// Installs the global subscriber (a second call is a no-op) and, when
/// configured, OTLP span export for `service`.
pub fn init(format: LogFormat, service: &str) -> TelemetryGuard {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let fmt = match format {
        LogFormat::Json => fmt
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .boxed(),
        LogFormat::Pretty => fmt.compact().boxed(),
    };
    let provider = otlp_provider(service);
    let otel = provider
        .as_ref()
        .map(|p| tracing_opentelemetry::layer().with_tracer(p.tracer("metric-orchestrator")));
    let installed = tracing_subscriber::registry()
        .with(filter)
        .with(fmt)
        .with(otel)
        .try_init()
        .is_ok();
    TelemetryGuard {
        provider: provider.filter(|_| installed),
    }
}

/// For command-line tools: [`init`] with `LOG_FORMAT` (default pretty: a
/// person reads them; an unknown value falls back to pretty too).
pub fn init_for_cli(service: &str) -> TelemetryGuard {
    let format = std::env::var("LOG_FORMAT")
        .ok()
        .and_then(|f| f.parse().ok())
        .unwrap_or(LogFormat::Pretty);
    init(format, service)
}

/// For tests: pretty logs, only what `RUST_LOG` asks for (default warnings).
pub fn init_for_tests() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_test_writer()
        .compact()
        .try_init();
}

/// Makes `span` a child of the inbound trace context, so that exported spans
/// continue the producer's trace (no effect when nothing exports).
pub fn continue_trace(span: &tracing::Span, parent: &TraceContext) {
    use opentelemetry::trace::{SpanContext, SpanId, TraceFlags, TraceId, TraceState};
    let (Ok(trace_id), Ok(span_id)) = (
        TraceId::from_hex(&parent.trace_id),
        SpanId::from_hex(&parent.span_id),
    ) else {
        return;
    };
    let flags = if parent.sampled {
        TraceFlags::SAMPLED
    } else {
        TraceFlags::default()
    };
    let remote = SpanContext::new(trace_id, span_id, flags, true, TraceState::default());
    let _ = span.set_parent(opentelemetry::Context::new().with_remote_span_context(remote));
}

/// The trace context to send downstream from inside `span`: the exported
/// span's own when spans are exported, else a new span id in `fallback`'s trace.
pub fn downstream(span: &tracing::Span, fallback: &TraceContext) -> TraceContext {
    let cx = span.context();
    let sc = cx.span().span_context().clone();
    if sc.is_valid() && sc.trace_id().to_string() == fallback.trace_id {
        TraceContext {
            trace_id: sc.trace_id().to_string(),
            span_id: sc.span_id().to_string(),
            sampled: sc.is_sampled(),
        }
    } else {
        fallback.child()
    }
}
