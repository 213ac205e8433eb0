//! The two store backends for conformance tests: every case is written once, taking a
//! [`Store`], and [`conformance!`] stamps it out as `sqlite::<case>` (a temporary file) and
//! `postgres::<case>` (a database of its own, dropped afterwards, also when the case panics).

use std::{future::Future, sync::Arc};

use persys_metrics_pipeline::store::Store;

/// Runs `case` against a store on a new SQLite file.
pub async fn on_sqlite<F, Fut>(case: F)
where
    F: FnOnce(Arc<Store>) -> Fut,
    Fut: Future<Output = ()>,
{
    let dir = tempfile::tempdir().expect("a temporary directory");
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("metrics.db").display());
    let store = Arc::new(Store::connect(&url, 4, "metrics").await.expect("open the SQLite store"));
    case(store.clone()).await;
    store.close().await;
}

/// Runs `case` against a store on a PostgreSQL database of its own; skips (fails under
/// `CI=true`) without `PERSYS_TEST_PG_ADMIN_URL`.
pub async fn on_postgres<F, Fut>(case: F)
where
    F: FnOnce(Arc<Store>) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let Some(db) = super::Db::create().await else { return };
    let store = Arc::new(Store::connect(&db.url, 4, "metrics").await.expect("open the PostgreSQL store"));
    // On a task of its own, so that a failing case still drops its database.
    let outcome = tokio::spawn(case(store.clone())).await;
    store.close().await;
    db.drop_now().await;
    if let Err(e) = outcome {
        std::panic::resume_unwind(e.into_panic());
    }
}

/// Stamps out `sqlite::<case>` and `postgres::<case>` for every case.
#[macro_export]
macro_rules! conformance {
    ($($case:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $case() {
                    $crate::common::backends::on_sqlite(super::$case).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test]
                async fn $case() {
                    $crate::common::backends::on_postgres(super::$case).await;
                }
            )*
        }
    };
}
