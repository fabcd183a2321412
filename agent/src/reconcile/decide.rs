//! What a cycle converges: a pure choice from the pointers, the fetched commit, the quarantine, the
//! unfinished attempt found at start and the trigger. No I/O; tested table-driven.

/// Why a cycle runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// Follow Git (a tick, `berth reconcile`, `resume`); `retry`: the operator lifted the quarantine.
    Follow { retry: bool },
    /// Converge what runs again without fetching (drift).
    Local,
    /// `berth rollback`: re-apply stored revision `seq` and pin there.
    Rollback(u64),
}

/// A commit the agent started applying and never finished (it was killed or crashed in between).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unfinished<'a> {
    pub commit: &'a str,
    /// How many agent starts found this attempt unfinished.
    pub deaths: u32,
}

/// The facts a decision is made from.
#[derive(Debug, Clone, Default)]
pub struct Facts<'a> {
    pub suspended: bool,
    pub pinned: Option<u64>,
    /// The revision the engine was last converged to: `(seq, commit)`.
    pub current: Option<(u64, &'a str)>,
    /// The commit the followed ref names on the remote, as last fetched.
    pub fetched: Option<&'a str>,
    /// A commit that failed (render, preflight, gate, or killed the agent): not applied again until the
    /// remote moves on or the operator retries.
    pub quarantined: Option<&'a str>,
    pub unfinished: Option<Unfinished<'a>>,
}

/// After this many starts that found the same attempt unfinished, the commit is quarantined.
pub const DEATHS_BEFORE_QUARANTINE: u32 = 2;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Suspended: no cycle at all (drift repair included).
    Suspended,
    /// Keep stored revision `seq` converged (the current or pinned one); `None`: nothing applied yet.
    Keep { seq: Option<u64> },
    /// Render and apply a commit (new, or an unfinished attempt resumed after a crash).
    Apply { commit: String, resumed: bool },
    /// Re-apply stored revision `seq` and pin there.
    Rollback { seq: u64 },
    /// The fetched commit is quarantined: report it and keep the current revision converged.
    Quarantined { commit: String, keep: Option<u64> },
    /// The agent died applying `commit` too often: quarantine it and converge the current revision.
    Poisoned { commit: String, keep: Option<u64> },
}

pub fn decide(trigger: Trigger, f: &Facts) -> Decision {
    let keep = f.pinned.or(f.current.map(|(seq, _)| seq));
    if f.suspended {
        return Decision::Suspended;
    }
    if let Trigger::Rollback(seq) = trigger {
        return Decision::Rollback { seq };
    }
    // A crash in the middle of an apply: resume it (even offline), unless it keeps killing the agent.
    if let Some(u) = &f.unfinished {
        if u.deaths >= DEATHS_BEFORE_QUARANTINE {
            return Decision::Poisoned {
                commit: u.commit.to_string(),
                keep,
            };
        }
        if f.pinned.is_none() && f.quarantined != Some(u.commit) {
            return Decision::Apply {
                commit: u.commit.to_string(),
                resumed: true,
            };
        }
    }
    if f.pinned.is_some() {
        return Decision::Keep { seq: keep };
    }
    let retry = matches!(trigger, Trigger::Follow { retry: true });
    match (trigger, f.fetched) {
        (Trigger::Follow { .. }, Some(fetched)) if f.current.map(|(_, c)| c) != Some(fetched) => {
            if f.quarantined == Some(fetched) && !retry {
                Decision::Quarantined {
                    commit: fetched.to_string(),
                    keep,
                }
            } else {
                Decision::Apply {
                    commit: fetched.to_string(),
                    resumed: false,
                }
            }
        }
        _ => Decision::Keep { seq: keep },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FOLLOW: Trigger = Trigger::Follow { retry: false };
    const RETRY: Trigger = Trigger::Follow { retry: true };

    fn apply(c: &str) -> Decision {
        Decision::Apply {
            commit: c.into(),
            resumed: false,
        }
    }

    #[test]
    fn table() {
        let cur = Some((3, "aaa"));
        let died = |n| {
            Some(Unfinished {
                commit: "bbb",
                deaths: n,
            })
        };
        #[rustfmt::skip]
        let cases: Vec<(&str, Trigger, Facts, Decision)> = vec![
            ("nothing yet", FOLLOW, Facts::default(), Decision::Keep { seq: None }),
            ("first commit", FOLLOW, Facts { fetched: Some("aaa"), ..Default::default() }, apply("aaa")),
            ("up to date", FOLLOW, Facts { current: cur, fetched: Some("aaa"), ..Default::default() }, Decision::Keep { seq: Some(3) }),
            ("new commit", FOLLOW, Facts { current: cur, fetched: Some("bbb"), ..Default::default() }, apply("bbb")),
            ("fetch failed: keep", FOLLOW, Facts { current: cur, ..Default::default() }, Decision::Keep { seq: Some(3) }),
            ("drift never applies a new commit", Trigger::Local, Facts { current: cur, fetched: Some("bbb"), ..Default::default() }, Decision::Keep { seq: Some(3) }),
            ("pinned: new commits are shown, not applied", FOLLOW, Facts { current: cur, pinned: Some(1), fetched: Some("bbb"), ..Default::default() }, Decision::Keep { seq: Some(1) }),
            ("rollback wins over a new commit", Trigger::Rollback(1), Facts { current: cur, fetched: Some("bbb"), ..Default::default() }, Decision::Rollback { seq: 1 }),
            ("quarantined commit is not applied", FOLLOW, Facts { current: cur, fetched: Some("bbb"), quarantined: Some("bbb"), ..Default::default() }, Decision::Quarantined { commit: "bbb".into(), keep: Some(3) }),
            ("the remote moved past the quarantine", FOLLOW, Facts { current: cur, fetched: Some("ccc"), quarantined: Some("bbb"), ..Default::default() }, apply("ccc")),
            ("--retry lifts the quarantine", RETRY, Facts { current: cur, fetched: Some("bbb"), quarantined: Some("bbb"), ..Default::default() }, apply("bbb")),
            ("suspended: nothing", FOLLOW, Facts { current: cur, fetched: Some("bbb"), suspended: true, ..Default::default() }, Decision::Suspended),
            ("suspended: no drift repair", Trigger::Local, Facts { current: cur, suspended: true, ..Default::default() }, Decision::Suspended),
            ("killed once mid-apply: resume, even offline", FOLLOW, Facts { current: cur, unfinished: died(1), ..Default::default() }, Decision::Apply { commit: "bbb".into(), resumed: true }),
            ("killed twice: poisoned", FOLLOW, Facts { current: cur, fetched: Some("bbb"), unfinished: died(2), ..Default::default() }, Decision::Poisoned { commit: "bbb".into(), keep: Some(3) }),
            ("killed during a drift cycle: resume", Trigger::Local, Facts { current: cur, unfinished: died(1), ..Default::default() }, Decision::Apply { commit: "bbb".into(), resumed: true }),
            ("pinned beats an unfinished attempt", FOLLOW, Facts { current: cur, pinned: Some(1), unfinished: died(1), ..Default::default() }, Decision::Keep { seq: Some(1) }),
        ];
        for (name, trigger, facts, want) in cases {
            assert_eq!(decide(trigger, &facts), want, "{name}");
        }
    }
}
