//! The guest's cgroup v2 statistics as containerd's `io.containerd.cgroups.v2.Metrics`.

use containerd_shim::protos::cgroups_v2::metrics::{
    CPUStat, IOEntry, IOStat, MemoryEvents, MemoryStat, Metrics, PidsStat,
};
use containerd_shim::protos::protobuf::well_known_types::any::Any;
use containerd_shim::protos::protobuf::Message;
use isola_protocol::ContainerStats;

/// The type URL containerd's typeurl registry knows the v2 metrics by.
pub const METRICS_V2_TYPE: &str = "io.containerd.cgroups.v2.Metrics";

pub fn to_metrics(s: &ContainerStats) -> Metrics {
    Metrics {
        pids: Some(PidsStat { current: s.pids_current, limit: s.pids_max.unwrap_or(0), ..Default::default() }).into(),
        cpu: Some(CPUStat {
            usage_usec: s.cpu_usage_usec,
            user_usec: s.cpu_user_usec,
            system_usec: s.cpu_system_usec,
            ..Default::default()
        })
        .into(),
        memory: Some(MemoryStat {
            usage: s.memory_current,
            usage_limit: s.memory_max.unwrap_or(u64::MAX),
            ..Default::default()
        })
        .into(),
        memory_events: Some(MemoryEvents { oom_kill: s.memory_oom_kills, ..Default::default() }).into(),
        io: Some(IOStat {
            usage: vec![IOEntry { rbytes: s.io_read_bytes, wbytes: s.io_write_bytes, ..Default::default() }],
            ..Default::default()
        })
        .into(),
        ..Default::default()
    }
}

pub fn to_any(s: &ContainerStats) -> Result<Any, containerd_shim::protos::protobuf::Error> {
    Ok(Any { type_url: METRICS_V2_TYPE.into(), value: to_metrics(s).write_to_bytes()?, ..Default::default() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_round_trip_through_the_v2_message() {
        let s = ContainerStats {
            cpu_usage_usec: 1500,
            cpu_user_usec: 1000,
            cpu_system_usec: 500,
            memory_current: 4 << 20,
            memory_max: Some(64 << 20),
            memory_oom_kills: 1,
            pids_current: 3,
            pids_max: None,
            io_read_bytes: 10,
            io_write_bytes: 20,
            pids: vec![1, 2, 3],
        };
        let any = to_any(&s).expect("encode");
        assert_eq!(any.type_url, "io.containerd.cgroups.v2.Metrics");
        let m = Metrics::parse_from_bytes(&any.value).expect("decode");
        assert_eq!(m.cpu.usage_usec, 1500);
        assert_eq!((m.memory.usage, m.memory.usage_limit), (4 << 20, 64 << 20));
        assert_eq!((m.pids.current, m.pids.limit), (3, 0));
        assert_eq!(m.memory_events.oom_kill, 1);
        assert_eq!((m.io.usage[0].rbytes, m.io.usage[0].wbytes), (10, 20));
    }
}
