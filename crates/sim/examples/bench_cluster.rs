//! End-to-end scheduler benchmarks against a running `gantry server` whose cluster is populated
//! by simulated instances (`scripts/bench-scheduler.sh` runs both; docs/benchmarks.md):
//!
//! - `run-tasks`: N tasks through RunTask (`count` per call, `concurrency` calls in flight) with
//!   spread(attribute:ecs.availability-zone) + binpack(memory) and
//!   `memberOf(attribute:ecs.instance-type =~ m5.*)`. Every answer is a durable commit of the
//!   placements. Reports tasks/s and call latencies, checks the zones and instance types used,
//!   then waits until the simulated instances reported every task RUNNING.
//! - `deploy`: a service of N tasks, then UpdateService to another revision, timed until one
//!   deployment is left, COMPLETED, with N running (several rounds).
//! - `describe-tasks`: closed-loop DescribeTasks of the same `batch` running tasks (listed with
//!   ListTasks first) from `concurrency` clients for `duration_s`; answers are checked once, then
//!   counted without being decoded. Then ListTasks pages of 100 over the whole cluster, timed.
//!
//! Credentials from GANTRY_ROOT_ACCESS_KEY_ID / GANTRY_ROOT_SECRET_ACCESS_KEY. The last line of
//! each command is `RESULT key=value ...` for scripts.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use gantry_sim::{ACCESS_KEY_ENV, EcsClient, SECRET_KEY_ENV};
use serde_json::{Value, json};

#[derive(Debug, Parser)]
struct Args {
    #[arg(long)]
    endpoint: String,
    #[arg(long, default_value = "default")]
    cluster: String,
    #[arg(long, default_value = "us-east-1")]
    region: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Places tasks through RunTask.
    RunTasks {
        #[arg(long, default_value_t = 10_000)]
        tasks: usize,
        #[arg(long, default_value_t = 10)]
        count: usize,
        #[arg(long, default_value_t = 64)]
        concurrency: usize,
        /// Memory (MiB) of the task's one container.
        #[arg(long, default_value_t = 256)]
        memory: u32,
        #[arg(long, default_value_t = 128)]
        cpu: u32,
        /// How long to wait for every task to be reported RUNNING.
        #[arg(long, default_value_t = 300)]
        running_timeout_s: u64,
    },
    /// Counts the cluster's connected instances (ListContainerInstances --filter).
    Fleet {
        /// Exit non-zero unless exactly this many are connected.
        #[arg(long)]
        expect: Option<usize>,
    },
    /// Times rolling deployments of a service.
    Deploy {
        #[arg(long, default_value_t = 50)]
        tasks: usize,
        #[arg(long, default_value_t = 3)]
        rounds: usize,
        #[arg(long, default_value = "bench-deploy")]
        service: String,
        /// Deadline of each step (steady state, each deployment).
        #[arg(long, default_value_t = 300)]
        timeout_s: u64,
    },
    /// Closed-loop DescribeTasks of `batch` tasks, then ListTasks over the cluster.
    DescribeTasks {
        #[arg(long, default_value_t = 100)]
        batch: usize,
        #[arg(long, default_value_t = 64)]
        concurrency: usize,
        #[arg(long, default_value_t = 10)]
        duration_s: u64,
    },
}

fn client(args: &Args, pool: usize) -> anyhow::Result<EcsClient> {
    let var = |n: &str| std::env::var(n).with_context(|| format!("{n} is not set"));
    Ok(EcsClient::new(
        &args.endpoint,
        &args.region,
        &var(ACCESS_KEY_ENV)?,
        &var(SECRET_KEY_ENV)?,
        pool,
        Duration::from_secs(120),
    )?)
}

fn pct(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1].as_secs_f64() * 1000.0
}

async fn register_family(
    api: &EcsClient,
    family: &str,
    cpu: u32,
    memory: u32,
    version: &str,
) -> anyhow::Result<String> {
    let v = api
        .call(
            "RegisterTaskDefinition",
            &json!({
                "family": family,
                "containerDefinitions": [{
                    "name": "app", "image": "public.ecr.aws/docker/library/busybox:latest",
                    "cpu": cpu, "memory": memory, "essential": true,
                    "command": ["httpd", "-f", "-p", "8080"],
                    "environment": [{"name": "VERSION", "value": version}],
                }],
            }),
        )
        .await?;
    v["taskDefinition"]["taskDefinitionArn"]
        .as_str()
        .map(str::to_owned)
        .context("RegisterTaskDefinition answered without an ARN")
}

#[derive(Default)]
struct RunStats {
    latencies: Vec<Duration>,
    tasks: Vec<Value>,
    failures: BTreeMap<String, usize>,
    errors: BTreeMap<String, usize>,
}

async fn run_tasks(
    args: &Args,
    tasks: usize,
    count: usize,
    concurrency: usize,
    cpu: u32,
    memory: u32,
    running_timeout: Duration,
) -> anyhow::Result<()> {
    let api = client(args, concurrency * 2)?;
    let td = register_family(&api, "bench-place", cpu, memory, "1").await?;
    let calls = tasks.div_ceil(count);
    let next = Arc::new(AtomicUsize::new(0));
    let request = json!({
        "cluster": args.cluster,
        "taskDefinition": td,
        "count": count,
        "placementStrategy": [
            {"type": "spread", "field": "attribute:ecs.availability-zone"},
            {"type": "binpack", "field": "memory"},
        ],
        "placementConstraints": [
            {"type": "memberOf", "expression": "attribute:ecs.instance-type =~ m5.*"},
        ],
    });
    println!(
        "run-tasks: {tasks} tasks, {calls} RunTask calls of {count}, {concurrency} in flight, \
         task {cpu} CPU / {memory} MiB, spread(AZ) + binpack(memory) + memberOf(m5.*)"
    );
    let started = Instant::now();
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..concurrency {
        let (api, next, request) = (api.clone(), next.clone(), request.clone());
        workers.spawn(async move {
            let mut s = RunStats::default();
            while next.fetch_add(1, Ordering::Relaxed) < calls {
                let t0 = Instant::now();
                let answer = api.call("RunTask", &request).await;
                s.latencies.push(t0.elapsed());
                match answer {
                    Ok(mut v) => {
                        if let Some(f) = v["failures"].as_array() {
                            for f in f {
                                let reason = f["reason"].as_str().unwrap_or("?").to_owned();
                                *s.failures.entry(reason).or_default() += 1;
                            }
                        }
                        if let Value::Array(t) = v["tasks"].take() {
                            s.tasks.extend(t);
                        }
                    }
                    Err(e) => {
                        let key = e.code().unwrap_or("transport").to_owned();
                        if s.errors.is_empty() {
                            eprintln!("RunTask error: {e}");
                        }
                        *s.errors.entry(key).or_default() += 1;
                    }
                }
            }
            s
        });
    }
    let mut all = RunStats::default();
    while let Some(r) = workers.join_next().await {
        let s = r?;
        all.latencies.extend(s.latencies);
        all.tasks.extend(s.tasks);
        for (k, n) in s.failures {
            *all.failures.entry(k).or_default() += n;
        }
        for (k, n) in s.errors {
            *all.errors.entry(k).or_default() += n;
        }
    }
    let wall = started.elapsed();
    all.latencies.sort();
    let placed = all.tasks.len();
    let tasks_per_s = placed as f64 / wall.as_secs_f64();
    let (p50, p99, max) = (
        pct(&all.latencies, 50.0),
        pct(&all.latencies, 99.0),
        pct(&all.latencies, 100.0),
    );
    println!(
        "placed {placed} of {tasks} tasks in {:.2} s: {tasks_per_s:.0} tasks/s; RunTask p50 {p50:.1} ms, \
         p99 {p99:.1} ms, max {max:.1} ms; placement failures {:?}; call errors {:?}",
        wall.as_secs_f64(),
        all.failures,
        all.errors
    );

    // What the placements look like: zones balanced, only m5.* instances, binpacked.
    let mut per_zone: BTreeMap<String, usize> = BTreeMap::new();
    let mut instances: BTreeSet<String> = BTreeSet::new();
    let mut arns = Vec::with_capacity(placed);
    for t in &all.tasks {
        *per_zone
            .entry(t["availabilityZone"].as_str().unwrap_or("?").to_owned())
            .or_default() += 1;
        if let Some(i) = t["containerInstanceArn"].as_str() {
            instances.insert(i.to_owned());
        }
        if let Some(a) = t["taskArn"].as_str() {
            arns.push(a.to_owned());
        }
    }
    let mut types: BTreeMap<String, usize> = BTreeMap::new();
    let list: Vec<&String> = instances.iter().collect();
    for chunk in list.chunks(100) {
        let v = api
            .call(
                "DescribeContainerInstances",
                &json!({"cluster": args.cluster, "containerInstances": chunk}),
            )
            .await?;
        for ci in v["containerInstances"].as_array().into_iter().flatten() {
            let ty = ci["attributes"]
                .as_array()
                .and_then(|a| a.iter().find(|x| x["name"] == "ecs.instance-type"))
                .and_then(|x| x["value"].as_str())
                .unwrap_or("?");
            *types.entry(ty.to_owned()).or_default() += 1;
        }
    }
    println!(
        "tasks per zone {per_zone:?}; {} distinct instances used, by type {types:?}",
        instances.len()
    );
    let off_constraint: usize = types
        .iter()
        .filter(|(t, _)| !t.starts_with("m5."))
        .map(|(_, n)| n)
        .sum();

    // Until every task is RUNNING (the simulated instances acknowledged it).
    let deadline = Instant::now() + running_timeout;
    let mut pending: Vec<String> = arns;
    while !pending.is_empty() {
        let mut still = Vec::new();
        for chunk in pending.chunks(100) {
            let v = api
                .call(
                    "DescribeTasks",
                    &json!({"cluster": args.cluster, "tasks": chunk}),
                )
                .await?;
            for t in v["tasks"].as_array().into_iter().flatten() {
                if t["lastStatus"] != "RUNNING" {
                    still.push(t["taskArn"].as_str().unwrap_or_default().to_owned());
                }
            }
        }
        pending = still;
        if pending.is_empty() {
            break;
        }
        if Instant::now() > deadline {
            bail!(
                "{} tasks not RUNNING within {running_timeout:?}",
                pending.len()
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let all_running = started.elapsed();
    println!(
        "all {placed} tasks RUNNING {:.2} s after the first RunTask",
        all_running.as_secs_f64()
    );
    println!(
        "RESULT placed={placed} wall_s={:.3} tasks_per_s={tasks_per_s:.0} p50_ms={p50:.1} p99_ms={p99:.1} \
         max_ms={max:.1} calls={} errors={} failures={} instances_used={} off_constraint={off_constraint} \
         all_running_s={:.3}",
        wall.as_secs_f64(),
        all.latencies.len(),
        all.errors.values().sum::<usize>(),
        all.failures.values().sum::<usize>(),
        instances.len(),
        all_running.as_secs_f64(),
    );
    if off_constraint > 0 || placed < tasks {
        bail!("{off_constraint} instances outside memberOf, {placed} of {tasks} tasks placed");
    }
    Ok(())
}

/// (deployments, primary task definition, rolloutState, runningCount, desiredCount)
async fn service_state(
    api: &EcsClient,
    cluster: &str,
    service: &str,
) -> anyhow::Result<(usize, String, String, u64)> {
    let v = api
        .call(
            "DescribeServices",
            &json!({"cluster": cluster, "services": [service]}),
        )
        .await?;
    let s = &v["services"][0];
    let deployments = s["deployments"].as_array().cloned().unwrap_or_default();
    let primary = deployments
        .iter()
        .find(|d| d["status"] == "PRIMARY")
        .cloned()
        .unwrap_or(Value::Null);
    Ok((
        deployments.len(),
        primary["taskDefinition"].as_str().unwrap_or("").to_owned(),
        primary["rolloutState"].as_str().unwrap_or("").to_owned(),
        s["runningCount"].as_u64().unwrap_or(0),
    ))
}

async fn wait_steady(
    api: &EcsClient,
    cluster: &str,
    service: &str,
    td: &str,
    tasks: usize,
    timeout: Duration,
) -> anyhow::Result<Duration> {
    let started = Instant::now();
    loop {
        let (deployments, primary, rollout, running) = service_state(api, cluster, service).await?;
        if deployments == 1 && primary == td && rollout == "COMPLETED" && running == tasks as u64 {
            return Ok(started.elapsed());
        }
        if started.elapsed() > timeout {
            bail!(
                "service {service} not steady within {timeout:?}: {deployments} deployments, \
                 primary {primary} {rollout}, {running} running"
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn deploy(
    args: &Args,
    tasks: usize,
    rounds: usize,
    service: &str,
    timeout: Duration,
) -> anyhow::Result<()> {
    let api = client(args, 8)?;
    let revs = [
        register_family(&api, "bench-deploy", 128, 256, "a").await?,
        register_family(&api, "bench-deploy", 128, 256, "b").await?,
    ];
    api.call(
        "CreateService",
        &json!({
            "cluster": args.cluster, "serviceName": service, "taskDefinition": revs[0],
            "desiredCount": tasks, "launchType": "EC2",
        }),
    )
    .await?;
    let created = wait_steady(&api, &args.cluster, service, &revs[0], tasks, timeout).await?;
    println!(
        "deploy: service of {tasks} tasks steady {:.2} s after CreateService",
        created.as_secs_f64()
    );
    let mut times = Vec::new();
    for round in 1..=rounds {
        let td = &revs[round % 2];
        let t0 = Instant::now();
        api.call(
            "UpdateService",
            &json!({"cluster": args.cluster, "service": service, "taskDefinition": td}),
        )
        .await?;
        wait_steady(&api, &args.cluster, service, td, tasks, timeout).await?;
        let took = t0.elapsed();
        println!(
            "deploy round {round}: UpdateService → one COMPLETED deployment with {tasks} running in {:.2} s",
            took.as_secs_f64()
        );
        times.push(took);
    }
    let list: Vec<String> = times
        .iter()
        .map(|d| format!("{:.2}", d.as_secs_f64()))
        .collect();
    let worst = times.iter().max().copied().unwrap_or_default();
    println!(
        "RESULT tasks={tasks} create_s={:.2} deploy_s={} worst_s={:.2}",
        created.as_secs_f64(),
        list.join(","),
        worst.as_secs_f64()
    );
    Ok(())
}

async fn fleet(args: &Args, expect: Option<usize>) -> anyhow::Result<()> {
    let api = client(args, 2)?;
    let started = Instant::now();
    let (mut connected, mut token) = (0usize, None::<String>);
    loop {
        let mut req = json!({
            "cluster": args.cluster, "filter": "agentConnected == true", "maxResults": 100,
        });
        if let Some(t) = &token {
            req["nextToken"] = json!(t);
        }
        let v = api.call("ListContainerInstances", &req).await?;
        connected += v["containerInstanceArns"].as_array().map_or(0, Vec::len);
        match v["nextToken"].as_str() {
            Some(t) => token = Some(t.to_owned()),
            None => break,
        }
    }
    println!(
        "RESULT connected={connected} list_s={:.2}",
        started.elapsed().as_secs_f64()
    );
    if let Some(n) = expect
        && n != connected
    {
        bail!("{connected} instances connected, expected {n}");
    }
    Ok(())
}

async fn describe_tasks(
    args: &Args,
    batch: usize,
    concurrency: usize,
    duration: Duration,
) -> anyhow::Result<()> {
    let api = client(args, concurrency)?;
    let listed = api
        .call(
            "ListTasks",
            &json!({"cluster": args.cluster, "maxResults": batch.min(100)}),
        )
        .await?;
    let arns: Vec<Value> = listed["taskArns"].as_array().cloned().unwrap_or_default();
    if arns.len() < batch {
        bail!(
            "only {} running tasks to describe, {batch} wanted",
            arns.len()
        );
    }
    let req = json!({"cluster": args.cluster, "tasks": arns});
    let check = api.call("DescribeTasks", &req).await?;
    let described = check["tasks"].as_array().map_or(0, Vec::len);
    let failures = check["failures"].as_array().map_or(0, Vec::len);
    if described != batch || failures != 0 {
        bail!("DescribeTasks answered {described} tasks and {failures} failures for {batch}");
    }
    let bytes = api.call_raw("DescribeTasks", &req).await?.len();
    // Serialized and hashed once, signed once a second, its answer counted but not gathered: the
    // load generator shares the two cores with the server.
    let req = Arc::new(api.prepare("DescribeTasks", &req));
    let errors = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let deadline = started + duration;
    let mut workers = Vec::new();
    for _ in 0..concurrency {
        let (api, req, errors) = (api.clone(), req.clone(), errors.clone());
        workers.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            while Instant::now() < deadline {
                let t0 = Instant::now();
                match api.call_prepared(&req).await {
                    Ok(_) => lat.push(t0.elapsed()),
                    Err(_) => {
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            lat
        }));
    }
    let mut lat = Vec::new();
    for w in workers {
        lat.extend(w.await?);
    }
    let wall = started.elapsed().as_secs_f64();
    lat.sort();
    let ok = lat.len();
    println!(
        "describe-tasks: {ok} answers of {batch} tasks ({bytes} bytes each) in {wall:.2} s from {concurrency} clients"
    );
    // ListTasks over the whole cluster, 100 per page.
    let t0 = Instant::now();
    let (mut listed, mut pages, mut token) = (0usize, 0usize, None::<String>);
    loop {
        let mut req = json!({"cluster": args.cluster, "maxResults": 100});
        if let Some(t) = &token {
            req["nextToken"] = json!(t);
        }
        let v = api.call("ListTasks", &req).await?;
        listed += v["taskArns"].as_array().map_or(0, Vec::len);
        pages += 1;
        match v["nextToken"].as_str() {
            Some(t) => token = Some(t.to_owned()),
            None => break,
        }
    }
    let list_ms = t0.elapsed().as_secs_f64() * 1000.0 / pages as f64;
    println!(
        "RESULT describe_req_per_s={:.0} tasks_per_s={:.0} p50_ms={:.2} p99_ms={:.2} ok={ok} errors={} \
         answer_bytes={bytes} list_tasks={listed} list_pages={pages} list_ms_per_page={list_ms:.2}",
        ok as f64 / wall,
        (ok * batch) as f64 / wall,
        pct(&lat, 50.0),
        pct(&lat, 99.0),
        errors.load(Ordering::Relaxed),
    );
    Ok(())
}

/// jemalloc, as the server uses: with glibc's malloc every DescribeTasks answer (124 KB) was
/// read into fresh pages (page faults were a tenth of the load generator's CPU).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        match &args.command {
            Command::RunTasks {
                tasks,
                count,
                concurrency,
                memory,
                cpu,
                running_timeout_s,
            } => {
                run_tasks(
                    &args,
                    *tasks,
                    *count,
                    *concurrency,
                    *cpu,
                    *memory,
                    Duration::from_secs(*running_timeout_s),
                )
                .await
            }
            Command::Fleet { expect } => fleet(&args, *expect).await,
            Command::DescribeTasks {
                batch,
                concurrency,
                duration_s,
            } => {
                describe_tasks(
                    &args,
                    *batch,
                    *concurrency,
                    Duration::from_secs(*duration_s),
                )
                .await
            }
            Command::Deploy {
                tasks,
                rounds,
                service,
                timeout_s,
            } => {
                deploy(
                    &args,
                    *tasks,
                    *rounds,
                    service,
                    Duration::from_secs(*timeout_s),
                )
                .await
            }
        }
    })
}
