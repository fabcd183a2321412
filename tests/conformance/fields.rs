//! The compared fields of one container, network or volume, each normalised only where the engine
//! legitimately stores the same meaning two ways (each normalisation says why).

use super::*;

pub(super) fn container_fields(c: &Value, norm: &Norm) -> BTreeMap<String, String> {
    let cfg = &c["Config"];
    let hc = &c["HostConfig"];
    let mut f = Fields {
        map: BTreeMap::new(),
        norm,
    };
    f.put(
        "name",
        json!(c["Name"].as_str().unwrap_or("").trim_start_matches('/')),
    );
    f.put("state", json!(container_state(c)));
    f.put("image", cfg["Image"].clone());
    f.put("command", cfg["Cmd"].clone());
    f.put("entrypoint", cfg["Entrypoint"].clone());
    f.put("env", set(&cfg["Env"]));
    f.put("user", cfg["User"].clone());
    f.put("working_dir", cfg["WorkingDir"].clone());
    f.put("hostname", cfg["Hostname"].clone());
    f.put("domainname", cfg["Domainname"].clone());
    f.put("tty", cfg["Tty"].clone());
    f.put("stdin_open", cfg["OpenStdin"].clone());
    f.put("stop_signal", cfg["StopSignal"].clone());
    f.put("stop_timeout", cfg["StopTimeout"].clone());
    f.put("mac_address", cfg["MacAddress"].clone());
    f.put("labels", user_labels(&cfg["Labels"]));
    // The engine leaves out zero durations and counts; a missing one and 0 both mean "engine default".
    let hcheck = &cfg["Healthcheck"];
    f.put(
        "healthcheck",
        if hcheck.is_null() {
            Value::Null
        } else {
            let n = |k: &str| hcheck[k].as_i64().unwrap_or(0);
            json!({
                "test": hcheck["Test"],
                "interval": n("Interval"),
                "timeout": n("Timeout"),
                "start_period": n("StartPeriod"),
                "start_interval": n("StartInterval"),
                "retries": n("Retries"),
            })
        },
    );
    // A port without a protocol is TCP to the engine (`nat.Port.Proto()`), so `3000` and `3000/tcp` are
    // one exposed port (Compose sends both when a port is in `expose` and in `ports`; the engine keeps
    // both keys). A range key (`4000-4001/udp`) is left as it is: the engine does not expand it.
    let exposed: Vec<String> = cfg["ExposedPorts"]
        .as_object()
        .map(|m| {
            m.keys()
                .map(|k| {
                    if k.contains('/') {
                        k.clone()
                    } else {
                        format!("{k}/tcp")
                    }
                })
                .collect()
        })
        .unwrap_or_default();
    f.put("exposed_ports", set(&json!(exposed)));
    f.put("port_bindings", port_bindings(&hc["PortBindings"]));
    // The engine treats an empty restart policy name as "no" (it is what `docker run` sends by default).
    let rp = &hc["RestartPolicy"];
    let rp_name = match rp["Name"].as_str().unwrap_or("") {
        "" => "no",
        other => other,
    };
    f.put(
        "restart",
        json!({"name": rp_name, "max_retries": rp["MaximumRetryCount"]}),
    );
    f.put("cap_add", capabilities(&hc["CapAdd"]));
    f.put("cap_drop", capabilities(&hc["CapDrop"]));
    let devices: Vec<String> = hc["Devices"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|d| {
                    format!(
                        "{}:{}:{}",
                        d["PathOnHost"].as_str().unwrap_or(""),
                        d["PathInContainer"].as_str().unwrap_or(""),
                        d["CgroupPermissions"].as_str().unwrap_or("")
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    f.put("devices", set(&json!(devices)));
    for (name, k) in [
        ("memory", "Memory"),
        ("memory_reservation", "MemoryReservation"),
        ("memory_swap", "MemorySwap"),
        ("nano_cpus", "NanoCpus"),
        ("cpu_shares", "CpuShares"),
        ("cpu_period", "CpuPeriod"),
        ("cpu_quota", "CpuQuota"),
        ("cpuset_cpus", "CpusetCpus"),
        ("pids_limit", "PidsLimit"),
        ("oom_kill_disable", "OomKillDisable"),
        ("oom_score_adj", "OomScoreAdj"),
        ("shm_size", "ShmSize"),
        ("device_cgroup_rules", "DeviceCgroupRules"),
        ("sysctls", "Sysctls"),
        ("tmpfs", "Tmpfs"),
        ("pid_mode", "PidMode"),
        ("ipc_mode", "IpcMode"),
        ("userns_mode", "UsernsMode"),
        ("dns", "Dns"),
        ("dns_search", "DnsSearch"),
        ("dns_options", "DnsOptions"),
        ("init", "Init"),
        ("privileged", "Privileged"),
        ("read_only", "ReadonlyRootfs"),
        ("runtime", "Runtime"),
        ("network_mode", "NetworkMode"),
        ("memory_swappiness", "MemorySwappiness"),
        ("cpu_count", "CpuCount"),
        ("cpu_percent", "CpuPercent"),
        ("cpu_rt_period", "CpuRealtimePeriod"),
        ("cpu_rt_runtime", "CpuRealtimeRuntime"),
        ("cgroup_parent", "CgroupParent"),
        ("cgroupns_mode", "CgroupnsMode"),
        ("uts_mode", "UTSMode"),
        ("isolation", "Isolation"),
        ("blkio_weight", "BlkioWeight"),
        ("blkio_weight_device", "BlkioWeightDevice"),
        ("blkio_device_read_bps", "BlkioDeviceReadBps"),
        ("blkio_device_write_bps", "BlkioDeviceWriteBps"),
        ("blkio_device_read_iops", "BlkioDeviceReadIOps"),
        ("blkio_device_write_iops", "BlkioDeviceWriteIOps"),
    ] {
        f.put(name, hc[k].clone());
    }
    let mut ulimits: Vec<Value> = hc["Ulimits"].as_array().cloned().unwrap_or_default();
    ulimits.sort_by_key(|u| u["Name"].as_str().unwrap_or("").to_string());
    f.put("ulimits", json!(ulimits));
    f.put(
        "log_config",
        json!({"type": hc["LogConfig"]["Type"], "config": canon(hc["LogConfig"]["Config"].clone())}),
    );
    f.put("security_opt", set(&hc["SecurityOpt"]));
    f.put("group_add", set(&hc["GroupAdd"]));
    f.put("extra_hosts", set(&hc["ExtraHosts"]));
    f.put("mounts", mounts(c));
    f.put("networks", attachments(c));
    f.map
}

/// Capability names as a set. The engine stores the names as the client sent them but reads them
/// case-insensitively with an optional `CAP_` prefix (`NormalizeLegacyCapabilities`): `net_admin`,
/// `NET_ADMIN` and `CAP_NET_ADMIN` are one capability.
pub(super) fn capabilities(v: &Value) -> Value {
    let Some(a) = v.as_array() else {
        return v.clone();
    };
    let names: Vec<Value> = a
        .iter()
        .map(|c| {
            let c = c.as_str().unwrap_or("").to_ascii_uppercase();
            json!(if c == "ALL" || c.starts_with("CAP_") {
                c
            } else {
                format!("CAP_{c}")
            })
        })
        .collect();
    set(&json!(names))
}

/// `HostConfig.PortBindings`: container port → sorted `host_ip:host_port` (an empty host ip and a missing
/// one both mean every interface).
pub(super) fn port_bindings(v: &Value) -> Value {
    let Some(m) = v.as_object() else {
        return Value::Null;
    };
    let mut out = Map::new();
    for (port, bindings) in m {
        let mut b: Vec<String> = bindings
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|x| {
                        format!(
                            "{}:{}",
                            x["HostIp"].as_str().unwrap_or(""),
                            x["HostPort"].as_str().unwrap_or("")
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        b.sort();
        out.insert(port.clone(), json!(b));
    }
    Value::Object(out)
}

/// The mounts the container has (`.Mounts`, whatever API created them: `Binds` or `Mounts`), with the
/// options that only the create request shows (volume nocopy, tmpfs size and mode), sorted by destination.
/// `Mode` is left out: it echoes the `Binds` string (`ro`, `rw`, `z`) and is empty for the `Mounts` API,
/// while `RW` and `Propagation` carry its meaning for both.
pub(super) fn mounts(c: &Value) -> Value {
    let hc = &c["HostConfig"];
    let requested: BTreeMap<String, &Value> = hc["Mounts"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|m| (m["Target"].as_str().unwrap_or("").to_string(), m))
                .collect()
        })
        .unwrap_or_default();
    let bind_opts: BTreeMap<String, Vec<String>> = hc["Binds"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|b| b.as_str())
                .filter_map(|b| {
                    let parts: Vec<&str> = b.split(':').collect();
                    (parts.len() >= 2).then(|| {
                        (
                            parts[1].to_string(),
                            parts
                                .get(2)
                                .map(|o| o.split(',').map(String::from).collect())
                                .unwrap_or_default(),
                        )
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    let mut out: Vec<Value> = Vec::new();
    let mut seen = BTreeSet::new();
    for m in c["Mounts"].as_array().cloned().unwrap_or_default() {
        let dst = m["Destination"].as_str().unwrap_or("").to_string();
        let req = requested.get(&dst);
        let nocopy = req.is_some_and(|r| r["VolumeOptions"]["NoCopy"] == json!(true))
            || bind_opts
                .get(&dst)
                .is_some_and(|o| o.iter().any(|x| x == "nocopy"));
        let mut o = json!({
            "type": m["Type"],
            "source": m["Source"],
            "destination": dst,
            "rw": m["RW"],
            "propagation": m["Propagation"],
            "nocopy": nocopy,
        });
        if m["Type"] == "volume" {
            o["name"] = m["Name"].clone();
            o["driver"] = m["Driver"].clone();
        }
        if let Some(t) = req.map(|r| &r["TmpfsOptions"]).filter(|t| !t.is_null()) {
            o["tmpfs"] = t.clone();
        }
        seen.insert(dst);
        out.push(o);
    }
    // tmpfs mounts of the `Mounts` API are not listed in `.Mounts` by every engine version.
    for (dst, r) in &requested {
        if r["Type"] == "tmpfs" && !seen.contains(dst) {
            out.push(json!({
                "type": "tmpfs",
                "destination": dst,
                "rw": r["ReadOnly"] != json!(true),
                "tmpfs": canon(r["TmpfsOptions"].clone()),
            }));
        }
    }
    out.sort_by_key(|m| m["destination"].as_str().unwrap_or("").to_string());
    json!(out)
}

/// Network attachments: network → aliases (as a set, minus the container's id and short id, which the
/// engine adds by itself), the configured (not the assigned) IPv4/IPv6 addresses, links, driver options.
pub(super) fn attachments(c: &Value) -> Value {
    let id = c["Id"].as_str().unwrap_or("");
    let short = &id[..id.len().min(12)];
    let mut out = Map::new();
    if let Some(m) = c["NetworkSettings"]["Networks"].as_object() {
        for (name, ep) in m {
            let aliases: Vec<Value> = ep["Aliases"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter(|x| x.as_str() != Some(id) && x.as_str() != Some(short))
                        .cloned()
                        .collect()
                })
                .unwrap_or_default();
            let ipam = &ep["IPAMConfig"];
            out.insert(
                name.clone(),
                json!({
                    "aliases": canon(set(&json!(aliases))),
                    "ipv4_address": ipam["IPv4Address"].as_str().unwrap_or(""),
                    "ipv6_address": ipam["IPv6Address"].as_str().unwrap_or(""),
                    "links": canon(ep["Links"].clone()),
                    "driver_opts": canon(ep["DriverOpts"].clone()),
                }),
            );
        }
    }
    Value::Object(out)
}

pub(super) fn network_fields(n: &Value, norm: &Norm) -> BTreeMap<String, String> {
    let mut f = Fields {
        map: BTreeMap::new(),
        norm,
    };
    f.put("name", n["Name"].clone());
    f.put("driver", n["Driver"].clone());
    f.put("options", n["Options"].clone());
    f.put("internal", n["Internal"].clone());
    f.put("attachable", n["Attachable"].clone());
    f.put("enable_ipv6", n["EnableIPv6"].clone());
    f.put("labels", user_labels(&n["Labels"]));
    // A subnet the fixture configured is one of the prefixes the harness handed out; any other was picked
    // by the engine from its default pools (the next free one, so it differs between the tools).
    let config: Vec<Value> = n["IPAM"]["Config"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .map(|mut c| {
            let subnet = c["Subnet"].as_str().unwrap_or("");
            if !norm
                .net_prefixes
                .iter()
                .any(|p| subnet.starts_with(p.as_str()))
            {
                c["Subnet"] = json!("<engine-assigned>");
                if c.get("Gateway").is_some() {
                    c["Gateway"] = json!("<engine-assigned>");
                }
            }
            canon(c)
        })
        .collect();
    f.put(
        "ipam",
        json!({
            "driver": n["IPAM"]["Driver"],
            "options": canon(n["IPAM"]["Options"].clone()),
            "config": canon(json!(config)),
        }),
    );
    f.map
}

pub(super) fn volume_fields(v: &Value, norm: &Norm) -> BTreeMap<String, String> {
    let mut f = Fields {
        map: BTreeMap::new(),
        norm,
    };
    f.put("name", v["Name"].clone());
    f.put("driver", v["Driver"].clone());
    f.put("options", v["Options"].clone());
    f.put("labels", user_labels(&v["Labels"]));
    f.map
}
