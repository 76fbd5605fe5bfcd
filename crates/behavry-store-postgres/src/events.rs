//! The event channel between replicas: PostgreSQL LISTEN/NOTIFY on one
//! channel, through the platform role's pool (notifications are not rows,
//! so row-level security does not apply; payloads name their tenant and
//! every receiver is a Behavry replica).

use async_trait::async_trait;
use behavry_store::{EventChannel, EventSubscription, StoreResult};
use sqlx::PgPool;
use sqlx::postgres::PgListener;

use crate::errors::map_err;

const CHANNEL: &str = "behavry_events";

pub(crate) struct PgEvents {
    pub(crate) pool: PgPool,
}

#[async_trait]
impl EventChannel for PgEvents {
    fn max_payload(&self) -> usize {
        // PostgreSQL refuses NOTIFY payloads of 8000 bytes or more.
        7900
    }

    async fn publish(&self, payload: &str) -> StoreResult<()> {
        sqlx::query("SELECT pg_notify($1, $2)")
            .bind(CHANNEL)
            .bind(payload)
            .execute(&self.pool)
            .await
            .map_err(map_err)?;
        Ok(())
    }

    async fn subscribe(&self) -> StoreResult<Box<dyn EventSubscription>> {
        let mut listener = PgListener::connect_with(&self.pool)
            .await
            .map_err(map_err)?;
        listener.listen(CHANNEL).await.map_err(map_err)?;
        Ok(Box::new(PgSubscription { listener }))
    }
}

struct PgSubscription {
    listener: PgListener,
}

#[async_trait]
impl EventSubscription for PgSubscription {
    async fn next(&mut self) -> StoreResult<String> {
        // `try_recv` reports a lost connection (None) instead of hiding it;
        // the next call reconnects and listens again.
        match self.listener.try_recv().await.map_err(map_err)? {
            Some(n) => Ok(n.payload().to_string()),
            None => Err(behavry_store::StoreError::Unavailable(
                "the event channel's connection was lost; reconnecting".into(),
            )),
        }
    }
}
