//! `both_stores!(case, ...)`: runs each `async fn case<K: Kv>(kv: Arc<K>, prefix: &str)` of the
//! calling test file on the embedded store and on the real etcd of the test command (under a
//! prefix of its own, so tests sharing the etcd do not meet). The caller has `Arc`, `MemKv` and
//! `EtcdKv` in scope.

macro_rules! both_stores {
    ($($case:ident),* $(,)?) => {
        mod mem {
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    super::$case(Arc::new(MemKv::new()), "/persys").await;
                }
            )*
        }
        mod etcd {
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let Some(endpoints) = persys_kit::testing::require_env("PERSYS_TEST_ETCD_ENDPOINTS", "an etcd server") else {
                        return;
                    };
                    let endpoints: Vec<String> = endpoints.split(',').map(str::to_owned).collect();
                    let kv = EtcdKv::connect(&endpoints).await.expect("etcd");
                    let prefix = format!("/t-{}", uuid::Uuid::new_v4().simple());
                    super::$case(Arc::new(kv), &prefix).await;
                }
            )*
        }
    };
}
