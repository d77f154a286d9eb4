//! One-line renderings of trace events for the CLI and report.md.

use crate::trace::{Event, EventKind, MemberInfo, MembershipOp};
use serde_json::Value;
use std::fmt::Write;

/// Longest free-text field (messages, values) kept in a summary.
const TEXT_MAX: usize = 80;
/// Deployer actions listed before the rest is counted.
const ACTIONS_MAX: usize = 6;

/// The lifecycle of a run in a few lines: steps, faults, starts and exits,
/// engine errors and membership calls, without the steady polling and
/// workload. Runs of the same event (a refused MemberAdd retried every
/// tick) are folded into one line with a count. Keeps the last `limit`.
pub fn story(trace: &crate::trace::Trace, limit: usize) -> Vec<String> {
    // (first t, summary, count, last t)
    let mut folded: Vec<(u64, String, usize, u64)> = Vec::new();
    for event in &trace.events {
        let relevant = matches!(
            event.kind,
            EventKind::StepStarted { .. }
                | EventKind::StepFinished { .. }
                | EventKind::FaultInjected { .. }
                | EventKind::DeployerError { .. }
                | EventKind::ProcessStarted { .. }
                | EventKind::ProcessExited { .. }
                | EventKind::SlotAdded { .. }
                | EventKind::SlotDeleted { .. }
                | EventKind::DataWiped { .. }
                | EventKind::LocalMember { .. }
                | EventKind::PdConfig { .. }
                | EventKind::PdClusterId { .. }
                | EventKind::EngineError { .. }
                | EventKind::MembershipCall { .. }
                | EventKind::NetworkCut { .. }
                | EventKind::NetworkHealed
        );
        if !relevant {
            continue;
        }
        let what = kind_summary(&event.kind);
        match folded.last_mut() {
            Some((_, last, count, until)) if *last == what => {
                *count += 1;
                *until = event.t_ms;
            }
            _ => folded.push((event.t_ms, what, 1, event.t_ms)),
        }
    }
    let skip = folded.len().saturating_sub(limit);
    folded
        .into_iter()
        .skip(skip)
        .map(|(at, what, count, until)| match count {
            1 => format!("t={at}ms {what}"),
            n => format!("t={at}ms {what} (x{n}, the last at t={until}ms)"),
        })
        .collect()
}

/// `t=1234ms seq=17 member-start slot=m2 ...`
pub fn event_summary(e: &Event) -> String {
    format!("t={}ms seq={} {}", e.t_ms, e.seq, kind_summary(&e.kind))
}

/// The event name followed by its key fields, on one line.
pub fn kind_summary(kind: &EventKind) -> String {
    let mut out = kind.name().to_string();
    // fmt::Write on a String cannot fail.
    let _ = write_fields(&mut out, kind);
    out
}

fn write_fields(out: &mut String, kind: &EventKind) -> std::fmt::Result {
    match kind {
        EventKind::RunStarted {
            format: _,
            run_id,
            scenario,
            strategy,
            engine,
            engine_version,
            backend,
            seed,
            tls,
            slots,
            quorum_grace_ms,
            member_fronts,
        } => {
            let slot_names: Vec<&str> = slots.iter().map(|s| s.name.as_str()).collect();
            let fronts: Vec<String> = member_fronts.iter().map(|f| text(f)).collect();
            write!(
                out,
                " run={} scenario={} strategy={} engine={}-{}{} backend={} seed={seed} slots=[{}] grace={quorum_grace_ms}ms",
                text(run_id),
                text(scenario),
                text(strategy),
                text(engine),
                text(engine_version),
                if *tls { "+tls" } else { "" },
                text(backend),
                slot_names.join(" "),
            )?;
            if !fronts.is_empty() {
                write!(out, " fronts=[{}]", fronts.join(" "))?;
            }
            Ok(())
        }
        EventKind::StepStarted {
            index,
            name,
            desired_replicas,
            deadline_ms,
            expect_unsettled,
        } => write!(
            out,
            " #{index} {} replicas={desired_replicas} deadline={deadline_ms}ms{}",
            text(name),
            if *expect_unsettled {
                " (expected not to settle)"
            } else {
                ""
            }
        ),
        EventKind::StepFinished {
            index,
            name,
            settled,
            elapsed_ms,
            detail,
            desired_slots,
        } => {
            let state = if *settled { "settled" } else { "unsettled" };
            write!(
                out,
                " #{index} {} {state} elapsed={elapsed_ms}ms",
                text(name)
            )?;
            if let Some(detail) = detail {
                write!(out, " detail={}", text(detail))?;
            }
            if let Some(slots) = desired_slots {
                write!(out, " desired=[{}]", slots.join(","))?;
            }
            Ok(())
        }
        EventKind::FaultInjected { fault, slot } => {
            write!(out, " {}", enum_name(fault))?;
            if let Some(slot) = slot {
                write!(out, " slot={}", text(slot))?;
            }
            Ok(())
        }
        EventKind::NetworkCut { isolated, rest } => write!(
            out,
            " isolated=[{}] rest=[{}]",
            isolated.join(","),
            rest.join(",")
        ),
        EventKind::NetworkHealed => Ok(()),
        EventKind::WriteProbe {
            slot,
            side_has_quorum,
            ok,
            error,
        } => {
            let side = if *side_has_quorum {
                "quorum"
            } else {
                "minority"
            };
            write!(out, " slot={} side={side} ok={ok}", text(slot))?;
            if let Some(error) = error {
                write!(out, " error={}", text(error))?;
            }
            Ok(())
        }
        EventKind::DeployerActions { actions } => {
            let mut shown: Vec<String> =
                actions.iter().take(ACTIONS_MAX).map(action_label).collect();
            if actions.len() > ACTIONS_MAX {
                shown.push(format!("+{} more", actions.len() - ACTIONS_MAX));
            }
            write!(out, " n={} [{}]", actions.len(), shown.join(", "))
        }
        EventKind::DeployerError { message } => write!(out, " {}", text(message)),
        EventKind::ProcessStarted {
            slot,
            pid,
            command,
            args,
            had_data,
        } => {
            // The basename is enough to tell engine binaries apart.
            let cmd = std::path::Path::new(command)
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| command.clone());
            let data = if *had_data { "kept" } else { "empty" };
            write!(
                out,
                " slot={} pid={pid} data={data} cmd={} args={}",
                text(slot),
                text(&cmd),
                args.len()
            )
        }
        EventKind::ProcessExited { slot, code, signal } => {
            write!(out, " slot={}", text(slot))?;
            match (code, signal) {
                (None, None) => write!(out, " status=unknown"),
                (code, signal) => {
                    if let Some(code) = code {
                        write!(out, " code={code}")?;
                    }
                    if let Some(signal) = signal {
                        write!(out, " signal={signal}")?;
                    }
                    Ok(())
                }
            }
        }
        EventKind::SlotAdded { info } => write!(
            out,
            " slot={} #{} peer={}",
            text(&info.name),
            info.ordinal,
            text(&info.peer_url)
        ),
        EventKind::SlotDeleted { slot } | EventKind::DataWiped { slot } => {
            write!(out, " slot={}", text(slot))
        }
        EventKind::MemberStart { slot, config } => {
            let names: Vec<&str> = config.initial_cluster.keys().map(String::as_str).collect();
            let wal = if config.member_initialized {
                "yes"
            } else {
                "no"
            };
            write!(
                out,
                " slot={} name={} state={} wal={wal} cluster=[{}] token={}",
                text(slot),
                text(&config.name),
                text(&config.initial_cluster_state),
                names.join(" "),
                text(&config.initial_cluster_token),
            )
        }
        EventKind::PdConfig {
            slot,
            initial_cluster,
            initial_cluster_state,
            join,
        } => {
            let names: Vec<&str> = initial_cluster.keys().map(String::as_str).collect();
            write!(
                out,
                " slot={} state={} cluster=[{}] join={}",
                text(slot),
                text(initial_cluster_state),
                names.join(" "),
                text(join)
            )
        }
        EventKind::PdClusterId {
            slot,
            cluster_id,
            existed,
        } => write!(
            out,
            " slot={} pd-cluster={} {}",
            text(slot),
            text(cluster_id),
            if *existed { "existed" } else { "first read" }
        ),
        EventKind::LocalMember {
            slot,
            member_id,
            cluster_id,
            restarted,
        } => {
            write!(
                out,
                " slot={} member={} cluster={}",
                text(slot),
                text(member_id),
                text(cluster_id)
            )?;
            if *restarted {
                out.push_str(" restarted");
            }
            Ok(())
        }
        EventKind::MembershipApplied {
            slot,
            op,
            member_id,
            peer_urls,
        } => {
            write!(
                out,
                " slot={} {} member={}",
                text(slot),
                op_name(*op),
                text(member_id)
            )?;
            if !peer_urls.is_empty() {
                write!(out, " peers=[{}]", urls(peer_urls))?;
            }
            Ok(())
        }
        EventKind::EngineError {
            slot,
            class,
            message,
        } => write!(
            out,
            " slot={} class={} {}",
            text(slot),
            enum_name(class),
            text(message)
        ),
        EventKind::MembershipCall {
            op,
            peer_url,
            member_id,
            ok,
            error,
        } => {
            write!(out, " {}", op_name(*op))?;
            if let Some(member_id) = member_id {
                write!(out, " member={}", text(member_id))?;
            }
            if let Some(peer_url) = peer_url {
                write!(out, " peer={}", text(peer_url))?;
            }
            outcome(out, *ok, error.as_deref())
        }
        EventKind::MemberList {
            via,
            cluster_id,
            members,
        } => {
            let listed: Vec<String> = members.iter().map(member_label).collect();
            write!(
                out,
                " via={} cluster={} [{}]",
                text(via),
                text(cluster_id),
                listed.join(", ")
            )
        }
        EventKind::MemberStatus {
            slot,
            cluster_id,
            member_id,
            leader,
            term,
            raft_index,
            revision,
            is_learner,
        } => {
            // etcd reports "0" when it knows no leader.
            let leader = if leader == "0" { "none" } else { leader };
            write!(
                out,
                " slot={} member={} cluster={} leader={} term={term} index={raft_index} rev={revision}",
                text(slot),
                text(member_id),
                text(cluster_id),
                text(leader),
            )?;
            if *is_learner {
                out.push_str(" learner");
            }
            Ok(())
        }
        EventKind::ClientWrite {
            key,
            value,
            ok,
            error,
            latency_ms,
        } => {
            write!(out, " key={} value={}", text(key), text(value))?;
            if let Some(ms) = latency_ms {
                write!(out, " in {ms}ms")?;
            }
            outcome(out, *ok, error.as_deref())
        }
        EventKind::Tso {
            slot,
            sent_ms,
            ok,
            physical,
            logical,
            error,
        } => {
            write!(out, " slot={} sent={sent_ms}ms", text(slot))?;
            if *ok {
                write!(out, " ts={physical}.{logical}")?;
            }
            outcome(out, *ok, error.as_deref())
        }
        EventKind::FinalRead { ok, error, values } => {
            write!(out, " keys={}", values.len())?;
            outcome(out, *ok, error.as_deref())
        }
        EventKind::OperatorStatus { object, members } => match members {
            Some(n) => write!(out, " {object} members={n}"),
            None => write!(out, " {object} members=?"),
        },
        EventKind::RunFinished { error } => match error {
            Some(error) => write!(out, " error={}", text(error)),
            None => write!(out, " ok"),
        },
    }
}

fn outcome(out: &mut String, ok: bool, error: Option<&str>) -> std::fmt::Result {
    if ok {
        return write!(out, " ok");
    }
    write!(out, " failed")?;
    if let Some(error) = error {
        write!(out, " error={}", text(error))?;
    }
    Ok(())
}

/// `m0:8e9e05c52164694d started` or `<unstarted>:1234 learner`.
fn member_label(m: &MemberInfo) -> String {
    let mut label = if m.is_started() {
        format!("{}:{} started", text(&m.name), text(&m.id))
    } else {
        format!("<unstarted>:{}", text(&m.id))
    };
    if m.is_learner {
        label.push_str(" learner");
    }
    label
}

/// A short name for one deployer action, whatever JSON shape it has.
fn action_label(action: &Value) -> String {
    const TAGS: [&str; 4] = ["action", "type", "kind", "op"];
    match action {
        Value::String(s) => text(s),
        Value::Object(map) => {
            let tag = TAGS
                .iter()
                .find_map(|t| map.get(*t).and_then(Value::as_str))
                .map(text);
            let slot = map.get("slot").and_then(Value::as_str).map(text);
            match (tag, slot) {
                (Some(tag), Some(slot)) => format!("{tag} {slot}"),
                (Some(tag), None) => tag,
                // Externally tagged enum: {"StartMember": {...}}.
                (None, _) if map.len() == 1 => {
                    let (name, inner) = map
                        .iter()
                        .next()
                        .map_or(("", &Value::Null), |(k, v)| (k.as_str(), v));
                    match inner.get("slot").and_then(Value::as_str) {
                        Some(slot) => format!("{} {}", text(name), text(slot)),
                        None => text(name),
                    }
                }
                _ => compact(action),
            }
        }
        other => compact(other),
    }
}

fn compact(value: &Value) -> String {
    super::truncate(&value.to_string(), 40)
}

fn urls(list: &[String]) -> String {
    list.iter().map(|u| text(u)).collect::<Vec<_>>().join(" ")
}

fn op_name(op: MembershipOp) -> &'static str {
    match op {
        MembershipOp::Add => "add",
        MembershipOp::AddLearner => "add-learner",
        MembershipOp::Remove => "remove",
        MembershipOp::Promote => "promote",
    }
}

/// The kebab-case wire name of a unit enum variant, so summaries match the
/// trace file.
fn enum_name(value: &impl serde::Serialize) -> String {
    match serde_json::to_value(value) {
        Ok(Value::String(s)) => s,
        _ => "?".to_string(),
    }
}

/// A field value: bare when it is one plain token, quoted otherwise, so the
/// summary stays one unambiguous line.
fn text(s: &str) -> String {
    let plain = !s.is_empty()
        && s.chars()
            .all(|c| !c.is_whitespace() && !c.is_control() && c != '"' && c != '\\');
    if plain {
        super::truncate(s, TEXT_MAX)
    } else {
        format!("{:?}", super::truncate(s, TEXT_MAX))
    }
}
