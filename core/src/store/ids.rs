//! The typed identifiers are `text` columns: each is written and read as
//! its string.

use tokio_postgres::types::{FromSql, IsNull, ToSql, Type};

use crate::domain::ids::{BackfillId, DatasetId, MetricId, OutboxId, RunId, UpdateId};

type BoxError = Box<dyn std::error::Error + Sync + Send>;

macro_rules! text_column {
    ($name:ident) => {
        impl ToSql for $name {
            fn to_sql(
                &self,
                ty: &Type,
                out: &mut tokio_postgres::types::private::BytesMut,
            ) -> Result<IsNull, BoxError> {
                self.as_str().to_sql(ty, out)
            }

            fn accepts(ty: &Type) -> bool {
                <&str as ToSql>::accepts(ty)
            }

            tokio_postgres::types::to_sql_checked!();
        }

        impl<'a> FromSql<'a> for $name {
            fn from_sql(ty: &Type, raw: &'a [u8]) -> Result<Self, BoxError> {
                String::from_sql(ty, raw).map($name::from)
            }

            fn accepts(ty: &Type) -> bool {
                <String as FromSql>::accepts(ty)
            }
        }
    };
}

text_column!(RunId);
text_column!(BackfillId);
text_column!(MetricId);
text_column!(DatasetId);
text_column!(UpdateId);

/// `outbox.id` is a `bigint`.
impl ToSql for OutboxId {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut tokio_postgres::types::private::BytesMut,
    ) -> Result<IsNull, BoxError> {
        self.get().to_sql(ty, out)
    }

    fn accepts(ty: &Type) -> bool {
        <i64 as ToSql>::accepts(ty)
    }

    tokio_postgres::types::to_sql_checked!();
}

impl<'a> FromSql<'a> for OutboxId {
    fn from_sql(ty: &Type, raw: &'a [u8]) -> Result<Self, BoxError> {
        i64::from_sql(ty, raw).map(OutboxId::new)
    }

    fn accepts(ty: &Type) -> bool {
        <i64 as FromSql>::accepts(ty)
    }
}
