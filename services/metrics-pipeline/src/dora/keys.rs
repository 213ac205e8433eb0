//! The four keys over a window, from the deployments in the pipeline's database:
//! - deployment frequency: successful deployments per day;
//! - lead time for changes: each commit counted once per component, from its author date to
//!   its first successful deployment, for the commits whose first one falls in the window
//!   (median and 90th percentile, interpolated);
//! - change failure rate: failed / all deployments;
//! - time to restore: from the first failure of a run of failures of a component in a cluster
//!   to its next successful deployment (median); runs not restored by the window's end are
//!   counted apart.
//!
//! Each gets the DORA 2023 band as Apache DevLake stores them: frequency elite at least daily,
//! high at least weekly, medium at least monthly; lead time elite under a day, high under a
//! week, medium under a month; change failure elite up to 5 %, high up to 10 %, medium up to
//! 15 %; restore elite under an hour, high under a day, medium under a week; low otherwise.

use persys_proto::metrics::v1::{DeploymentStatus, DoraPerformanceLevel as Level, DoraWeek, GetDoraMetricsResponse};
use sqlx::AssertSqlSafe;

use crate::{clock::timestamp, db::Db, on_db, store::StoreError};

const HOUR_MS: i64 = 3_600_000;
const DAY_MS: i64 = 24 * HOUR_MS;
const WEEK_MS: i64 = 7 * DAY_MS;
/// 1970-01-05 was a Monday.
const MONDAY_MS: i64 = 4 * DAY_MS;

/// What is measured.
pub struct Scope<'a> {
    /// Component, or every one when empty.
    pub component: &'a str,
    /// Cluster, or every one when empty.
    pub cluster: &'a str,
    /// DeploymentEnvironment number.
    pub environment: i32,
    /// Window start (ms).
    pub from_ms: i64,
    /// Window end, exclusive (ms).
    pub to_ms: i64,
    /// Only deployments this user may see ([`crate::dora::store::Filter::visible_to`]).
    pub visible_to: Option<&'a str>,
}

/// The value at quantile `q` of sorted `v`, interpolated between neighbours.
pub fn quantile(v: &[i64], q: f64) -> Option<i64> {
    if v.is_empty() {
        return None;
    }
    let rank = q * (v.len() - 1) as f64;
    let (lo, hi) = (rank.floor() as usize, rank.ceil() as usize);
    Some(v[lo] + ((v[hi] - v[lo]) as f64 * (rank - lo as f64)).round() as i64)
}

fn duration(ms: i64) -> prost_types::Duration {
    prost_types::Duration { seconds: ms.div_euclid(1000), nanos: (ms.rem_euclid(1000) * 1_000_000) as i32 }
}

/// Band of a deployment frequency (per day).
pub fn frequency_level(per_day: f64, deployments: i64) -> Level {
    match per_day {
        _ if deployments == 0 => Level::Unspecified,
        f if f >= 1.0 => Level::Elite,
        f if f >= 1.0 / 7.0 => Level::High,
        f if f >= 1.0 / 30.0 => Level::Medium,
        _ => Level::Low,
    }
}

/// Band of a lead time or a time to restore (ms), by the bounds of elite, high and medium.
fn time_level(ms: Option<i64>, bounds: [i64; 3]) -> Level {
    match ms {
        None => Level::Unspecified,
        Some(t) if t < bounds[0] => Level::Elite,
        Some(t) if t < bounds[1] => Level::High,
        Some(t) if t < bounds[2] => Level::Medium,
        Some(_) => Level::Low,
    }
}

/// Band of a lead time (ms).
pub fn lead_time_level(ms: Option<i64>) -> Level {
    time_level(ms, [DAY_MS, WEEK_MS, 30 * DAY_MS])
}

/// Band of a time to restore (ms).
pub fn restore_level(ms: Option<i64>) -> Level {
    time_level(ms, [HOUR_MS, DAY_MS, WEEK_MS])
}

/// Band of a change failure rate (0-1).
pub fn failure_level(rate: f64, deployments: i64) -> Level {
    match rate {
        _ if deployments == 0 => Level::Unspecified,
        r if r <= 0.05 => Level::Elite,
        r if r <= 0.10 => Level::High,
        r if r <= 0.15 => Level::Medium,
        _ => Level::Low,
    }
}

/// Monday 00:00 UTC of the week holding `ms`.
pub fn week_start(ms: i64) -> i64 {
    ms - (ms - MONDAY_MS).rem_euclid(WEEK_MS)
}

/// The scope's filter on `deployments`: $1 environment, $2 component, $3 cluster, $8 the user
/// it is visible to (every query binds $1-$8, using what it needs).
macro_rules! filter {
    () => {
        "environment = $1 AND ($2 = '' OR component = $2) AND ($3 = '' OR cluster = $3) \
         AND ($8::text IS NULL OR owner_id = '' OR owner_id = $8)"
    };
}

/// Runs one of the queries below over `s` on `db`, binding $1-$8. PostgreSQL needs the casts to
/// type parameters a query only tests for NULL; SQLite takes the same text without them, and
/// spells `IS DISTINCT FROM` as `IS NOT`.
async fn fetch<T>(db: &Db, s: &Scope<'_>, sql: &'static str) -> Result<Vec<T>, StoreError>
where
    T: Send + Unpin,
    for<'r> T: sqlx::FromRow<'r, sqlx::postgres::PgRow> + sqlx::FromRow<'r, sqlx::sqlite::SqliteRow>,
{
    let sql = match db {
        Db::Postgres(_) => sql.to_owned(),
        Db::Sqlite(_) => sql.replace("::smallint", "").replace("::text", "").replace("IS DISTINCT FROM", "IS NOT"),
    };
    Ok(on_db!(db, pool => {
        sqlx::query_as(AssertSqlSafe(sql))
            .bind(s.environment as i16)
            .bind(s.component)
            .bind(s.cluster)
            .bind(s.from_ms)
            .bind(s.to_ms)
            .bind(DeploymentStatus::Success as i16)
            .bind(DeploymentStatus::Failed as i16)
            .bind(s.visible_to)
            .fetch_all(pool)
            .await?
    }))
}

/// Computes the four keys over `s`.
pub async fn compute(db: &Db, s: &Scope<'_>, now_ms: i64) -> Result<GetDoraMetricsResponse, StoreError> {
    let deployments: Vec<(i64, i16)> = fetch(
        db,
        s,
        concat!(
            "SELECT deployed_ms, status FROM deployments WHERE ",
            filter!(),
            " AND deployed_ms >= $4 AND deployed_ms < $5 AND $6::smallint IS NOT NULL AND $7::smallint IS NOT NULL"
        ),
    )
    .await?;
    let success = DeploymentStatus::Success as i16;
    let failed = DeploymentStatus::Failed as i16;
    // Each commit once per component, at its first successful deployment ever.
    let leads: Vec<(i64, i64)> = fetch(
        db,
        s,
        "SELECT first_ms, first_ms - authored_ms FROM ( \
           SELECT min(d.deployed_ms) AS first_ms, min(c.authored_ms) AS authored_ms \
           FROM deployment_commits c JOIN deployments d ON d.id = c.deployment_id \
           WHERE d.status = $6 AND c.authored_ms > 0 AND d.environment = $1 \
             AND ($2 = '' OR d.component = $2) AND ($3 = '' OR d.cluster = $3) \
             AND ($8::text IS NULL OR d.owner_id = '' OR d.owner_id = $8) AND $7::smallint IS NOT NULL \
           GROUP BY d.component, c.repo_url, c.sha) f \
         WHERE first_ms >= $4 AND first_ms < $5",
    )
    .await?;
    // First failures of runs of failures in the window, and the success that ended each.
    let runs: Vec<(i64, Option<i64>)> = fetch(
        db,
        s,
        concat!(
            "WITH ordered AS ( \
           SELECT component, cluster, deployed_ms, status, \
                  lag(status) OVER (PARTITION BY component, cluster ORDER BY deployed_ms, id) AS before \
           FROM deployments WHERE ",
            filter!(),
            " AND deployed_ms < $5) \
         SELECT o.deployed_ms, (SELECT min(x.deployed_ms) FROM deployments x \
             WHERE x.component = o.component AND x.cluster = o.cluster AND x.environment = $1 \
               AND x.status = $6 AND x.deployed_ms > o.deployed_ms AND x.deployed_ms < $5 \
               AND ($8::text IS NULL OR x.owner_id = '' OR x.owner_id = $8)) \
         FROM ordered o WHERE o.status = $7 AND o.before IS DISTINCT FROM $7 AND o.deployed_ms >= $4"
        ),
    )
    .await?;

    let total = deployments.len() as i64;
    let failures = deployments.iter().filter(|d| d.1 == failed).count() as i64;
    let successes = deployments.iter().filter(|d| d.1 == success).count() as i64;
    let days = (s.to_ms - s.from_ms) as f64 / DAY_MS as f64;
    let per_day = if days > 0.0 { successes as f64 / days } else { 0.0 };
    let mut lead: Vec<i64> = leads.iter().map(|l| l.1.max(0)).collect();
    lead.sort_unstable();
    let mut restores: Vec<i64> = runs.iter().filter_map(|(f, r)| r.map(|r| r - f)).collect();
    restores.sort_unstable();
    let unrestored = runs.iter().filter(|r| r.1.is_none()).count() as i64;
    let rate = if total == 0 { 0.0 } else { failures as f64 / total as f64 };
    let lead_median = quantile(&lead, 0.5);
    let restore_median = quantile(&restores, 0.5);

    let mut weeks = Vec::new();
    let mut start = week_start(s.from_ms);
    while start < s.to_ms {
        let end = start + WEEK_MS;
        let in_week = |ms: i64| ms >= start && ms < end;
        let mut week_lead: Vec<i64> = leads.iter().filter(|l| in_week(l.0)).map(|l| l.1.max(0)).collect();
        week_lead.sort_unstable();
        weeks.push(DoraWeek {
            week_start: Some(timestamp(start)),
            deployments_total: deployments.iter().filter(|d| in_week(d.0)).count() as i64,
            deployments_failed: deployments.iter().filter(|d| in_week(d.0) && d.1 == failed).count() as i64,
            lead_time_median: quantile(&week_lead, 0.5).map(duration),
        });
        start = end;
    }

    Ok(GetDoraMetricsResponse {
        range: Some(persys_proto::common::v1::TimeRange {
            start: Some(timestamp(s.from_ms)),
            end: Some(timestamp(s.to_ms)),
        }),
        deployments_total: total,
        deployments_failed: failures,
        deployment_frequency_per_day: per_day,
        lead_time_median: lead_median.map(duration),
        lead_time_p90: quantile(&lead, 0.9).map(duration),
        change_failure_rate: rate,
        time_to_restore_median: restore_median.map(duration),
        unrestored_failures: unrestored,
        deployment_frequency_level: frequency_level(per_day, total) as i32,
        lead_time_level: lead_time_level(lead_median) as i32,
        change_failure_rate_level: failure_level(rate, total) as i32,
        time_to_restore_level: restore_level(restore_median) as i32,
        computed_at: Some(timestamp(now_ms)),
        weeks,
        benchmark: "dora-2023".into(),
    })
}

#[cfg(test)]
mod tests {
    use persys_proto::metrics::v1::DoraPerformanceLevel as Level;

    use super::{
        DAY_MS, HOUR_MS, failure_level, frequency_level, lead_time_level, quantile, restore_level, week_start,
    };

    #[test]
    fn quantiles_interpolate() {
        assert_eq!(quantile(&[], 0.5), None);
        assert_eq!(quantile(&[7], 0.9), Some(7));
        assert_eq!(quantile(&[1, 3], 0.5), Some(2));
        assert_eq!(quantile(&[10, 20, 30, 40, 50], 0.9), Some(46));
    }

    #[test]
    fn bands_follow_the_2023_report() {
        assert_eq!(frequency_level(2.0, 60), Level::Elite);
        assert_eq!(frequency_level(0.2, 6), Level::High);
        assert_eq!(frequency_level(0.05, 2), Level::Medium);
        assert_eq!(frequency_level(0.01, 1), Level::Low);
        assert_eq!(frequency_level(0.0, 0), Level::Unspecified);
        assert_eq!(lead_time_level(Some(DAY_MS - 1)), Level::Elite);
        assert_eq!(lead_time_level(Some(DAY_MS)), Level::High);
        assert_eq!(lead_time_level(Some(40 * DAY_MS)), Level::Low);
        assert_eq!(lead_time_level(None), Level::Unspecified);
        assert_eq!(restore_level(Some(HOUR_MS / 2)), Level::Elite);
        assert_eq!(restore_level(Some(3 * DAY_MS)), Level::Medium);
        assert_eq!(failure_level(0.05, 20), Level::Elite);
        assert_eq!(failure_level(0.12, 20), Level::Medium);
        assert_eq!(failure_level(0.5, 2), Level::Low);
    }

    #[test]
    fn weeks_start_on_monday_utc() {
        // 2026-12-02 (a Wednesday) 15:00 UTC -> Monday 2026-11-30 00:00 UTC.
        assert_eq!(week_start(1_796_223_600_000), 1_795_996_800_000);
        assert_eq!(week_start(1_795_996_800_000), 1_795_996_800_000);
    }
}
