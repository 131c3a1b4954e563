//! The reserved numbers and names of a message or an enum.

use std::collections::BTreeSet;

use prost_reflect::{EnumDescriptor, MessageDescriptor};

pub(super) struct Reserved {
    /// Inclusive, sorted, with overlapping or adjacent ranges merged.
    ranges: Vec<(i64, i64)>,
    names: BTreeSet<String>,
}

impl Reserved {
    pub fn of_message(message: &MessageDescriptor) -> Self {
        // Message ranges exclude their end; enum ranges include it.
        let ranges = message
            .reserved_ranges()
            .map(|r| (i64::from(r.start), i64::from(r.end) - 1));
        Self::new(ranges, message.reserved_names())
    }

    pub fn of_enum(enum_: &EnumDescriptor) -> Self {
        let ranges = enum_
            .reserved_ranges()
            .map(|r| (i64::from(*r.start()), i64::from(*r.end())));
        Self::new(ranges, enum_.reserved_names())
    }

    fn new<'a>(
        ranges: impl Iterator<Item = (i64, i64)>,
        names: impl Iterator<Item = &'a str>,
    ) -> Self {
        let mut sorted: Vec<(i64, i64)> = ranges.collect();
        sorted.sort_unstable();
        let mut merged: Vec<(i64, i64)> = Vec::with_capacity(sorted.len());
        for (start, end) in sorted {
            match merged.last_mut() {
                Some(last) if start <= last.1 + 1 => last.1 = last.1.max(end),
                _ => merged.push((start, end)),
            }
        }
        Reserved {
            ranges: merged,
            names: names.map(str::to_owned).collect(),
        }
    }

    pub fn has_number(&self, number: impl Into<i64>) -> bool {
        let number = number.into();
        self.ranges
            .iter()
            .any(|&(start, end)| (start..=end).contains(&number))
    }

    pub fn has_name(&self, name: &str) -> bool {
        self.names.contains(name)
    }

    /// Describes what `old` reserved that `self` no longer does. Ranges may be
    /// split or merged as long as every number stays reserved.
    pub fn dropped_since(&self, old: &Reserved) -> Vec<String> {
        // Merged ranges are disjoint and not adjacent, so an old range is
        // still reserved only if it lies within a single new one.
        let ranges = old
            .ranges
            .iter()
            .filter(|&&(start, end)| !self.ranges.iter().any(|&(s, e)| s <= start && end <= e))
            .map(|&(start, end)| {
                if start == end {
                    format!("reserved number {start}")
                } else {
                    format!("reserved range {start} to {end}")
                }
            });
        let names = old
            .names
            .difference(&self.names)
            .map(|name| format!("reserved name {name:?}"));
        ranges.chain(names).collect()
    }
}
