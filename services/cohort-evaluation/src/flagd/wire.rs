//! The flagd service, once for both protocol versions ([`service`]).

/// `flagd.evaluation.$version.Service` over [`Flagd`]: decode, call, encode. The versions share
/// every message but field presence; `$present` turns a value or variant that may be absent
/// into what the version's field holds.
macro_rules! service {
    ($version:ident, $present:path) => {
        use cohort_proto::flagd::evaluation::$version as pb;
        use futures::StreamExt as _;
        use futures::stream::Map;
        use pb::service_server::Service;
        use tokio_stream::wrappers::ReceiverStream;
        use tonic::{Request, Response, Status};
        use tracing::instrument;

        use super::{Answer, AnyFlag, AnyValue, Event, Flagd, Wanted};

        #[tonic::async_trait]
        impl Service for Flagd {
            #[instrument(level = "debug", skip_all)]
            async fn resolve_all(
                &self,
                request: Request<pb::ResolveAllRequest>,
            ) -> Result<Response<pb::ResolveAllResponse>, Status> {
                let (metadata, _, m) = request.into_parts();
                let (flags, metadata) = self.all(&metadata, m.context).await?;
                let flags = flags.into_iter().map(|(key, flag)| (key, any_flag(flag))).collect();
                Ok(Response::new(pb::ResolveAllResponse { flags, metadata: Some(metadata) }))
            }

            #[instrument(level = "debug", skip_all, fields(key = %request.get_ref().flag_key))]
            async fn resolve_boolean(
                &self,
                request: Request<pb::ResolveBooleanRequest>,
            ) -> Result<Response<pb::ResolveBooleanResponse>, Status> {
                let (metadata, _, m) = request.into_parts();
                let r = self.resolve(&metadata, &m.flag_key, m.context, Wanted::Boolean).await?;
                Ok(Response::new(pb::ResolveBooleanResponse {
                    value: $present(r.value.and_then(Answer::boolean)),
                    reason: r.reason.into(),
                    variant: $present(r.variant),
                    metadata: Some(r.metadata),
                }))
            }

            #[instrument(level = "debug", skip_all, fields(key = %request.get_ref().flag_key))]
            async fn resolve_string(
                &self,
                request: Request<pb::ResolveStringRequest>,
            ) -> Result<Response<pb::ResolveStringResponse>, Status> {
                let (metadata, _, m) = request.into_parts();
                let r = self.resolve(&metadata, &m.flag_key, m.context, Wanted::String).await?;
                Ok(Response::new(pb::ResolveStringResponse {
                    value: $present(r.value.and_then(Answer::string)),
                    reason: r.reason.into(),
                    variant: $present(r.variant),
                    metadata: Some(r.metadata),
                }))
            }

            #[instrument(level = "debug", skip_all, fields(key = %request.get_ref().flag_key))]
            async fn resolve_float(
                &self,
                request: Request<pb::ResolveFloatRequest>,
            ) -> Result<Response<pb::ResolveFloatResponse>, Status> {
                let (metadata, _, m) = request.into_parts();
                let r = self.resolve(&metadata, &m.flag_key, m.context, Wanted::Float).await?;
                Ok(Response::new(pb::ResolveFloatResponse {
                    value: $present(r.value.and_then(Answer::float)),
                    reason: r.reason.into(),
                    variant: $present(r.variant),
                    metadata: Some(r.metadata),
                }))
            }

            #[instrument(level = "debug", skip_all, fields(key = %request.get_ref().flag_key))]
            async fn resolve_int(
                &self,
                request: Request<pb::ResolveIntRequest>,
            ) -> Result<Response<pb::ResolveIntResponse>, Status> {
                let (metadata, _, m) = request.into_parts();
                let r = self.resolve(&metadata, &m.flag_key, m.context, Wanted::Integer).await?;
                Ok(Response::new(pb::ResolveIntResponse {
                    value: $present(r.value.and_then(Answer::integer)),
                    reason: r.reason.into(),
                    variant: $present(r.variant),
                    metadata: Some(r.metadata),
                }))
            }

            #[instrument(level = "debug", skip_all, fields(key = %request.get_ref().flag_key))]
            async fn resolve_object(
                &self,
                request: Request<pb::ResolveObjectRequest>,
            ) -> Result<Response<pb::ResolveObjectResponse>, Status> {
                let (metadata, _, m) = request.into_parts();
                let r = self.resolve(&metadata, &m.flag_key, m.context, Wanted::Object).await?;
                Ok(Response::new(pb::ResolveObjectResponse {
                    // A message field: present or not in both versions.
                    value: r.value.and_then(Answer::object),
                    reason: r.reason.into(),
                    variant: $present(r.variant),
                    metadata: Some(r.metadata),
                }))
            }

            type EventStreamStream = Map<ReceiverStream<Result<Event, Status>>, Encode>;

            #[instrument(level = "debug", skip_all)]
            async fn event_stream(
                &self,
                request: Request<pb::EventStreamRequest>,
            ) -> Result<Response<Self::EventStreamStream>, Status> {
                let events = self.events(request.metadata()).await?;
                Ok(Response::new(events.map(event as Encode)))
            }
        }

        type Encode = fn(Result<Event, Status>) -> Result<pb::EventStreamResponse, Status>;

        fn event(e: Result<Event, Status>) -> Result<pb::EventStreamResponse, Status> {
            e.map(|e| pb::EventStreamResponse { r#type: e.kind.to_owned(), data: e.data })
        }

        fn any_flag(f: AnyFlag) -> pb::AnyFlag {
            use pb::any_flag::Value as V;
            let value = f.value.map(|v| match v {
                AnyValue::Bool(b) => V::BoolValue(b),
                AnyValue::String(s) => V::StringValue(s),
                AnyValue::Double(n) => V::DoubleValue(n),
                AnyValue::Object(o) => V::ObjectValue(o),
            });
            pb::AnyFlag {
                reason: f.reason.into(),
                variant: $present(f.variant),
                value,
                metadata: Some(f.metadata),
            }
        }
    };
}

pub(crate) use service;
