//! The connector ranges' claim index in PostgreSQL (`connector_ranges`, see crate::spans): kept
//! with every connector written, filled for the rows written before it existed, and read by a
//! new connector's overlap check.

use deadpool_postgres::GenericClient;

use super::engine::{CONNECTOR_COLUMNS, connector_row};
use super::{each, exec, from_json, rows};
use crate::Result;
use crate::model::Connector;
use crate::spans::{Span, spans_of};

/// The schema version whose step made the index; rows written before it are indexed when it runs.
pub(super) const CLAIM_INDEXES: usize = 5;

/// Indexes one connector's ranges (in the transaction that writes it).
pub(super) async fn index_connector(c: &impl GenericClient, k: &Connector) -> Result<()> {
    for s in spans_of(&k.ips) {
        exec(
            c,
            "INSERT INTO connector_ranges (tenant, connector, lo, hi) VALUES ($1, $2, $3, $4)",
            &[&k.tenant, &k.name, &s.lo(), &s.hi()],
        )
        .await?;
    }
    Ok(())
}

/// Indexes every connector written before the index existed (schema step 5), ten thousand
/// spans a statement: a large directory's migration is not a round trip per connector while
/// the other nodes wait for the migration lock.
pub(super) async fn index_claims(c: &impl GenericClient) -> Result<()> {
    const BATCH: usize = 10_000;
    let all = rows(c, "SELECT tenant, name, ips FROM connectors", &[]).await?;
    let mut columns: [Vec<String>; 4] = Default::default();
    for (i, r) in all.iter().enumerate() {
        let (tenant, name, ips): (String, String, String) =
            (r.try_get(0)?, r.try_get(1)?, r.try_get(2)?);
        for s in spans_of(&from_json(ips)) {
            columns[0].push(tenant.clone());
            columns[1].push(name.clone());
            columns[2].push(s.lo());
            columns[3].push(s.hi());
        }
        if columns[0].len() >= BATCH || i + 1 == all.len() {
            let [t, n, lo, hi] = std::mem::take(&mut columns);
            exec(
                c,
                "INSERT INTO connector_ranges (tenant, connector, lo, hi)
                 SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[])",
                &[&t, &n, &lo, &hi],
            )
            .await?;
        }
    }
    Ok(())
}

/// The connectors with a range that overlaps one of `spans`: the spans that start inside one,
/// and the spans that start at one of its enclosing network addresses and reach its end.
pub(super) async fn connectors_touching(
    c: &impl GenericClient,
    spans: &[Span],
) -> Result<Vec<Connector>> {
    let mut out = Vec::new();
    for s in spans {
        let found = rows(
            c,
            &format!(
                "SELECT {CONNECTOR_COLUMNS} FROM connectors WHERE (tenant, name) IN (
                     SELECT tenant, connector FROM connector_ranges WHERE lo BETWEEN $1 AND $2
                     UNION
                     SELECT tenant, connector FROM connector_ranges WHERE lo = ANY($3) AND hi >= $2)"
            ),
            &[&s.lo(), &s.hi(), &s.enclosing_starts()],
        )
        .await?;
        out.extend(each(found, connector_row)?);
    }
    out.sort_by(|a, b| (&a.tenant, &a.name).cmp(&(&b.tenant, &b.name)));
    out.dedup_by(|a, b| a.tenant == b.tenant && a.name == b.name);
    Ok(out)
}
