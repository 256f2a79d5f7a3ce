//! Logs, and with the `otel` feature OpenTelemetry traces exported over OTLP/HTTP: a span
//! per S3 request (its trace id is on the request's log line) with the NATS calls inside.
//! Without an OTLP endpoint no request span is made, so tracing costs nothing.

use std::sync::atomic::{AtomicBool, Ordering};

use tracing::Span;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

static TRACING: AtomicBool = AtomicBool::new(false);

/// Keeps the trace exporter running; dropping it sends what is left.
pub struct Guard {
    #[cfg(feature = "otel")]
    provider: Option<opentelemetry_sdk::trace::SdkTracerProvider>,
}

impl Drop for Guard {
    fn drop(&mut self) {
        #[cfg(feature = "otel")]
        if let Some(p) = self.provider.take() {
            let _ = p.shutdown();
        }
    }
}

/// Installs the log output (`filter`, text or JSON) and, given an OTLP endpoint
/// (`http://collector:4318`), the trace exporter. Call once, inside the Tokio runtime.
pub fn init(filter: &str, json: bool, otlp_endpoint: Option<&str>) -> Result<Guard, String> {
    let filter = EnvFilter::try_new(filter).unwrap_or_else(|_| EnvFilter::new("info"));
    let fmt = if json {
        tracing_subscriber::fmt::layer().json().boxed()
    } else {
        tracing_subscriber::fmt::layer().boxed()
    }
    .with_filter(filter);
    let registry = tracing_subscriber::registry().with(fmt);
    match otlp_endpoint {
        #[cfg(feature = "otel")]
        Some(endpoint) => {
            let (layer, provider) = otel::layer(endpoint)?;
            registry.with(layer).try_init().map_err(|e| e.to_string())?;
            TRACING.store(true, Ordering::Relaxed);
            Ok(Guard {
                provider: Some(provider),
            })
        }
        #[cfg(not(feature = "otel"))]
        Some(_) => Err("this build has no OpenTelemetry support (cargo feature `otel`)".into()),
        None => {
            registry.try_init().map_err(|e| e.to_string())?;
            Ok(Guard {
                #[cfg(feature = "otel")]
                provider: None,
            })
        }
    }
}

/// The span of one S3 request, or a disabled span when traces are not exported.
pub fn request_span(request_id: &str, method: &http::Method) -> Span {
    if !TRACING.load(Ordering::Relaxed) {
        return Span::none();
    }
    let span = tracing::info_span!(
        "s3.request",
        otel.kind = "server",
        request_id,
        http.method = %method,
        operation = tracing::field::Empty,
        http.status_code = tracing::field::Empty,
        trace_id = tracing::field::Empty,
    );
    #[cfg(feature = "otel")]
    otel::record_trace_id(&span);
    span
}

#[cfg(feature = "otel")]
mod otel {
    use opentelemetry::trace::{TraceContextExt, TracerProvider};
    use opentelemetry_otlp::{SpanExporter, WithExportConfig};
    use opentelemetry_sdk::trace::span_processor_with_async_runtime::BatchSpanProcessor;
    use opentelemetry_sdk::trace::SdkTracerProvider;
    use opentelemetry_sdk::Resource;
    use tracing::Span;
    use tracing_opentelemetry::OpenTelemetrySpanExt;
    use tracing_subscriber::filter::Targets;
    use tracing_subscriber::registry::LookupSpan;
    use tracing_subscriber::Layer;

    /// The tracing layer that exports the gateway's spans (request and NATS calls).
    pub fn layer<S>(endpoint: &str) -> Result<(impl Layer<S>, SdkTracerProvider), String>
    where
        S: tracing::Subscriber + for<'a> LookupSpan<'a>,
    {
        let url = format!("{}/v1/traces", endpoint.trim_end_matches('/'));
        let exporter = SpanExporter::builder()
            .with_http()
            .with_endpoint(url)
            .build()
            .map_err(|e| format!("OTLP exporter: {e}"))?;
        let provider = SdkTracerProvider::builder()
            .with_span_processor(
                BatchSpanProcessor::builder(exporter, opentelemetry_sdk::runtime::Tokio).build(),
            )
            .with_resource(
                Resource::builder()
                    .with_service_name("jets3-gateway")
                    .build(),
            )
            .build();
        let layer = tracing_opentelemetry::layer()
            .with_tracer(provider.tracer("jets3-gateway"))
            .with_filter(Targets::new().with_target("jets3_gateway", tracing::Level::DEBUG));
        Ok((layer, provider))
    }

    pub fn record_trace_id(span: &Span) {
        let id = span.context().span().span_context().trace_id();
        span.record("trace_id", tracing::field::display(id));
    }
}
