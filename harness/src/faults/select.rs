//! Which members a fault targets, as a suite names them: an ordinal,
//! `leader`, `follower` or `random`, or a set of ordinals to cut off.

use serde::Deserialize;

/// The largest ordinal a set can name, plus one.
const MAX_ORDINALS: u32 = 16;

/// Which member a fault hits: an ordinal, or `leader`, `follower`, `random`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "SelectorRaw")]
pub enum MemberSelector {
    Ordinal(u32),
    Leader,
    Follower,
    Random,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum SelectorRaw {
    Ordinal(u32),
    Word(String),
}

impl TryFrom<SelectorRaw> for MemberSelector {
    type Error = String;
    fn try_from(raw: SelectorRaw) -> Result<Self, Self::Error> {
        match raw {
            SelectorRaw::Ordinal(n) => Ok(MemberSelector::Ordinal(n)),
            SelectorRaw::Word(w) => MemberSelector::from_word(&w),
        }
    }
}

impl MemberSelector {
    pub fn from_word(word: &str) -> Result<Self, String> {
        match word {
            "leader" => Ok(MemberSelector::Leader),
            "follower" => Ok(MemberSelector::Follower),
            "random" => Ok(MemberSelector::Random),
            other => Err(format!(
                "unknown member {other:?}: expected an ordinal, leader, follower or random"
            )),
        }
    }

    /// `1`, `leader`, `follower`, `random`.
    pub fn describe(self) -> String {
        match self {
            MemberSelector::Ordinal(n) => n.to_string(),
            MemberSelector::Leader => "leader".into(),
            MemberSelector::Follower => "follower".into(),
            MemberSelector::Random => "random".into(),
        }
    }
}

/// Which members a partition cuts off from the rest: one member by
/// selector (`leader`, `1`), or several by ordinal (`[0, 1]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "IsolateRaw")]
pub enum IsolateSet {
    One(MemberSelector),
    /// Bit `n` set for ordinal `n`.
    Ordinals(u16),
}

#[derive(Deserialize)]
#[serde(untagged)]
enum IsolateRaw {
    Many(Vec<u32>),
    One(MemberSelector),
}

impl TryFrom<IsolateRaw> for IsolateSet {
    type Error = String;
    fn try_from(raw: IsolateRaw) -> Result<Self, Self::Error> {
        match raw {
            IsolateRaw::One(sel) => Ok(IsolateSet::One(sel)),
            IsolateRaw::Many(list) if list.is_empty() => Err("isolate needs a member".into()),
            IsolateRaw::Many(list) => list
                .into_iter()
                .try_fold(0u16, |mask, o| {
                    if o < MAX_ORDINALS {
                        Ok(mask | 1 << o)
                    } else {
                        Err(format!("member {o} out of range"))
                    }
                })
                .map(IsolateSet::Ordinals),
        }
    }
}

impl IsolateSet {
    pub fn ordinals(mask: u16) -> impl Iterator<Item = u32> {
        (0..16).filter(move |o| mask & (1 << o) != 0)
    }

    /// `leader` or `[0, 1]`.
    pub fn describe(self) -> String {
        match self {
            IsolateSet::One(selector) => selector.describe(),
            IsolateSet::Ordinals(mask) => format!(
                "[{}]",
                IsolateSet::ordinals(mask)
                    .map(|o| o.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }
    }

    /// One selector per member to cut off.
    pub fn selectors(self) -> Vec<MemberSelector> {
        match self {
            IsolateSet::One(selector) => vec![selector],
            IsolateSet::Ordinals(mask) => IsolateSet::ordinals(mask)
                .map(MemberSelector::Ordinal)
                .collect(),
        }
    }
}
