//! Summaries that add up: counts add, lists extend. [`tally!`] writes a
//! summary's `+=` from a pattern naming every field, so that a field added
//! to the struct does not compile until it is summed (or explicitly kept).

/// One field of a summary, added to by the same field of another.
pub trait Tally {
    fn tally(&mut self, other: Self);
}

impl Tally for usize {
    fn tally(&mut self, other: Self) {
        *self += other;
    }
}

impl Tally for u64 {
    fn tally(&mut self, other: Self) {
        *self += other;
    }
}

impl<T> Tally for Vec<T> {
    fn tally(&mut self, other: Self) {
        self.extend(other);
    }
}

/// `tally!(Summary { a, b; keep: c })` implements `AddAssign` for
/// `Summary`: `a` and `b` are summed with [`Tally`], `c` keeps the left
/// side's value. Every field must be listed.
macro_rules! tally {
    ($ty:ident { $($sum:ident),* $(,)? $(; keep: $($keep:ident),* $(,)?)? }) => {
        impl std::ops::AddAssign for $ty {
            fn add_assign(&mut self, other: Self) {
                let $ty { $($sum,)* $($($keep: _,)*)? } = other;
                $( $crate::ground::tally::Tally::tally(&mut self.$sum, $sum); )*
            }
        }
    };
}
pub(crate) use tally;

#[cfg(test)]
mod tests {
    #[derive(Debug, Default, PartialEq)]
    struct Summary {
        count: usize,
        bytes: u64,
        ids: Vec<i32>,
        first: Option<&'static str>,
    }
    tally!(Summary { count, bytes, ids; keep: first });

    #[test]
    fn counts_add_lists_extend_kept_fields_stay() {
        let cases = [
            (Summary::default(), Summary::default(), Summary::default()),
            (
                Summary {
                    count: 1,
                    bytes: 10,
                    ids: vec![1],
                    first: Some("a"),
                },
                Summary {
                    count: 2,
                    bytes: 5,
                    ids: vec![2, 3],
                    first: Some("b"),
                },
                Summary {
                    count: 3,
                    bytes: 15,
                    ids: vec![1, 2, 3],
                    first: Some("a"),
                },
            ),
            (
                Summary::default(),
                Summary {
                    count: 4,
                    bytes: 0,
                    ids: vec![7],
                    first: Some("b"),
                },
                Summary {
                    count: 4,
                    bytes: 0,
                    ids: vec![7],
                    first: None,
                },
            ),
        ];
        for (mut left, right, want) in cases {
            left += right;
            assert_eq!(left, want);
        }
    }
}
