//! For tests only: act as a given user towards an internal service, as the gateway does after
//! it has checked the user's token. The service honours these claims only from a peer whose
//! certificate is the gateway's, so the connection must present `gateway` (see
//! [`crate::Connection::internal`]); from anyone else they are ignored or refused.

use persys_kit::{
    UserClaims,
    client::TracedChannel,
    identity::{Role, USER_ID_HEADER, USER_NAME_HEADER, USER_ROLE_HEADER},
};
use persys_proto::scheduler::v1::scheduler_service_client::SchedulerServiceClient;
use tonic::{Status, codegen::InterceptedService, metadata::MetadataValue, service::Interceptor};

use crate::Connection;

/// Adds the gateway's `x-persys-user-*` metadata for one user to every call.
#[derive(Clone, Debug)]
pub struct AsUser(UserClaims);

impl AsUser {
    /// Acts as `claims`.
    pub fn new(claims: UserClaims) -> Self {
        Self(claims)
    }

    /// Acts as a user with this id (also the name) and role.
    pub fn named(name: &str, role: Role) -> Self {
        Self(UserClaims { id: name.to_owned(), name: name.to_owned(), role })
    }
}

impl Interceptor for AsUser {
    fn call(&mut self, mut request: tonic::Request<()>) -> Result<tonic::Request<()>, Status> {
        let bad = |_| Status::invalid_argument("user claims must be ASCII");
        let m = request.metadata_mut();
        m.insert(USER_ID_HEADER, MetadataValue::try_from(self.0.id.as_str()).map_err(bad)?);
        m.insert(USER_NAME_HEADER, MetadataValue::try_from(self.0.name.as_str()).map_err(bad)?);
        m.insert(USER_ROLE_HEADER, MetadataValue::from_static(self.0.role.as_str()));
        Ok(request)
    }
}

/// The channel type of a client acting as a user.
pub type UserChannel = InterceptedService<TracedChannel, AsUser>;

/// Returns a scheduler client acting as `user` on `connection`.
pub fn scheduler_as(connection: &Connection, user: AsUser) -> SchedulerServiceClient<UserChannel> {
    SchedulerServiceClient::with_interceptor(connection.channel(), user)
}

/// Follows workload `id` through `client` until `done` holds for it and returns it; panics
/// after `timeout` (or on deletion) with the last version seen, which is what a failing test
/// needs to show.
pub async fn expect_workload<T>(
    client: &SchedulerServiceClient<T>,
    id: &str,
    timeout: std::time::Duration,
    done: impl Fn(&persys_proto::scheduler::v1::Workload) -> bool,
) -> persys_proto::scheduler::v1::Workload
where
    T: tonic::client::GrpcService<tonic::body::Body> + Clone,
    T::Error: Into<tonic::codegen::StdError>,
    T::ResponseBody: tonic::codegen::Body<Data = tonic::codegen::Bytes> + Send + 'static,
    <T::ResponseBody as tonic::codegen::Body>::Error: Into<tonic::codegen::StdError> + Send,
{
    let mut last = None;
    let until = |w: &persys_proto::scheduler::v1::Workload| {
        last = Some(w.clone());
        done(w)
    };
    let found = tokio::time::timeout(timeout, crate::watch::wait_until_on(client, "test", id, until)).await;
    match found {
        Ok(Ok(w)) => w,
        other => panic!("workload {id} never reached the condition ({other:?}); last seen: {last:#?}"),
    }
}

/// Follows the logs of workload `id` through `client` until they contain `needle` and returns
/// the text read; panics after `timeout` (or when the stream ends) with what it read.
pub async fn expect_log<T>(
    client: &SchedulerServiceClient<T>,
    id: &str,
    needle: &str,
    timeout: std::time::Duration,
) -> String
where
    T: tonic::client::GrpcService<tonic::body::Body> + Clone,
    T::Error: Into<tonic::codegen::StdError>,
    T::ResponseBody: tonic::codegen::Body<Data = tonic::codegen::Bytes> + Send + 'static,
    <T::ResponseBody as tonic::codegen::Body>::Error: Into<tonic::codegen::StdError> + Send,
{
    use persys_proto::scheduler::v1::StreamLogsRequest;
    let mut text = String::new();
    let read = tokio::time::timeout(timeout, async {
        let request = StreamLogsRequest { workload_id: id.into(), follow: true, ..Default::default() };
        let mut logs = client.clone().stream_logs(request).await?.into_inner();
        while let Some(m) = logs.message().await? {
            text.push_str(&String::from_utf8_lossy(&m.chunk.unwrap_or_default().data));
            if text.contains(needle) {
                return Ok(true);
            }
        }
        Ok::<_, Status>(false)
    })
    .await;
    match read {
        Ok(Ok(true)) => text,
        other => panic!("the logs of workload {id} never showed {needle:?} ({other:?}); read: {text:?}"),
    }
}
