//! The agent against a fake control plane on the real Docker Engine.

#![allow(clippy::unwrap_used)]

mod support;

use std::time::Duration;

use serde_json::{Value, json};
use support::{Env, containers_of, docker_exec, docker_or_skip, http_get, inspect, wait_for};

const T: Duration = Duration::from_secs(60);

fn httpd_td(image: &str) -> Value {
    json!({"family": "web", "revision": 4, "containerDefinitions": [{
        "name": "web", "image": image, "memory": 64, "cpu": 128, "stopTimeout": 2,
        "portMappings": [{"containerPort": 8080, "hostPort": 0}],
        "command": ["sh", "-c", "mkdir -p /www && echo hello-gantry > /www/index.html && exec httpd -f -v -p 8080 -h /www"]
    }]})
}

fn container<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["containers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["containerName"] == name)
        .unwrap()
}

fn host_port(report: &Value, name: &str) -> u16 {
    container(report, name)["networkBindings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["bindIP"] == "0.0.0.0")
        .and_then(|b| b["hostPort"].as_u64())
        .map(|p| u16::try_from(p).unwrap())
        .expect("a 0.0.0.0 network binding")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn httpd_task_runs_on_a_dynamic_port_and_stops() {
    if !docker_or_skip("httpd_task_runs_on_a_dynamic_port_and_stops") {
        return;
    }
    let env = Env::new().await;
    let agent = env.start_agent();
    let task = env.fake.task(httpd_td(&env.image));
    let arn = task.task_arn.clone();
    env.fake.push(task);

    let pending = env.fake.wait_status(&arn, "PENDING", T).await;
    assert!(pending["pullStartedAt"].as_f64().is_some());
    let running = env.fake.wait_status(&arn, "RUNNING", T).await;
    let web = container(&running, "web");
    assert_eq!(web["status"], "RUNNING");
    let runtime_id = web["runtimeId"].as_str().unwrap().to_owned();
    let port = host_port(&running, "web");
    assert_ne!(port, 8080);
    let page = http_get(port).await;
    assert!(page.contains("hello-gantry"), "{page}");

    // The container carries the contract labels and the limits.
    let c = inspect(&runtime_id).unwrap();
    let labels = &c["Config"]["Labels"];
    assert_eq!(labels["com.amazonaws.ecs.task-arn"], arn.as_str());
    assert_eq!(labels["com.amazonaws.ecs.container-name"], "web");
    assert_eq!(labels["com.amazonaws.ecs.task-definition-family"], "web");
    assert_eq!(labels["com.amazonaws.ecs.task-definition-version"], "4");
    assert_eq!(
        labels["gantry.container-instance"],
        env.fake.instance_arn.as_str()
    );
    assert!(c["Name"].as_str().unwrap().starts_with("/ecs-web-4-web-"));
    assert_eq!(c["HostConfig"]["Memory"], 64 * 1024 * 1024);
    assert_eq!(c["HostConfig"]["CpuShares"], 128);

    // Registration carried resources, attributes and the reserved ports.
    let reg = env.fake.state.lock().unwrap().registrations[0].clone();
    assert_eq!(reg["cluster"], env.fake.cluster.as_str());
    let res = reg["totalResources"].as_array().unwrap();
    let cpu = res.iter().find(|r| r["name"] == "CPU").unwrap();
    assert!(cpu["integerValue"].as_i64().unwrap() >= 1024);
    let ports = res.iter().find(|r| r["name"] == "PORTS").unwrap();
    assert!(
        ports["stringSetValue"]
            .as_array()
            .unwrap()
            .contains(&json!("22"))
    );
    let attrs = reg["attributes"].as_array().unwrap();
    assert!(
        attrs
            .iter()
            .any(|a| a["name"] == "stack" && a["value"] == "test")
    );
    assert!(
        attrs
            .iter()
            .any(|a| a["name"] == "ecs.capability.container-health-check")
    );

    env.fake.stop(&arn);
    let stopped = env.fake.wait_status(&arn, "STOPPED", T).await;
    assert_eq!(stopped["reason"], "Task stopped by the control plane");
    assert_eq!(container(&stopped, "web")["status"], "STOPPED");
    assert!(stopped["executionStoppedAt"].as_f64().is_some());
    wait_for("container removal", T, || {
        inspect(&runtime_id).is_none().then_some(())
    })
    .await;
    agent.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_image_stops_with_cannot_pull() {
    if !docker_or_skip("missing_image_stops_with_cannot_pull") {
        return;
    }
    let env = Env::new().await;
    let agent = env.start_agent();
    let task = env
        .fake
        .task(json!({"family": "nope", "containerDefinitions": [{
        "name": "app", "image": "127.0.0.1:1/gantry-does-not-exist:never", "memory": 16}]}));
    let arn = task.task_arn.clone();
    env.fake.push(task);
    let stopped = env.fake.wait_status(&arn, "STOPPED", T).await;
    let reason = stopped["reason"].as_str().unwrap();
    assert!(reason.starts_with("CannotPullContainerError: "), "{reason}");
    assert!(containers_of(&env.fake.instance_arn).is_empty());
    agent.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn essential_container_exit_stops_the_task_with_its_exit_code() {
    if !docker_or_skip("essential_container_exit_stops_the_task_with_its_exit_code") {
        return;
    }
    let env = Env::new().await;
    let agent = env.start_agent();
    let task = env.fake.task(json!({"family": "exits", "containerDefinitions": [
        {"name": "main", "image": env.image, "memory": 16, "command": ["sh", "-c", "sleep 1; exit 3"]},
        {"name": "side", "image": env.image, "memory": 16, "essential": false, "stopTimeout": 1,
         "command": ["sleep", "3600"]}]}));
    let arn = task.task_arn.clone();
    env.fake.push(task);
    let stopped = env.fake.wait_status(&arn, "STOPPED", T).await;
    assert_eq!(stopped["reason"], "Essential container in task exited");
    assert_eq!(container(&stopped, "main")["exitCode"], 3);
    assert_eq!(container(&stopped, "side")["status"], "STOPPED");
    wait_for("containers removed", T, || {
        containers_of(&env.fake.instance_arn)
            .is_empty()
            .then_some(())
    })
    .await;
    agent.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn depends_on_healthy_starts_after_the_dependency_is_healthy() {
    if !docker_or_skip("depends_on_healthy_starts_after_the_dependency_is_healthy") {
        return;
    }
    let env = Env::new().await;
    let agent = env.start_agent();
    let task = env.fake.task(json!({"family": "ordered", "containerDefinitions": [
        {"name": "app", "image": env.image, "memory": 16, "stopTimeout": 1,
         "command": ["sleep", "3600"],
         "dependsOn": [{"containerName": "db", "condition": "HEALTHY"}]},
        {"name": "db", "image": env.image, "memory": 16, "stopTimeout": 1,
         "command": ["sh", "-c", "sleep 2; touch /ready; exec sleep 3600"],
         "healthCheck": {"command": ["CMD-SHELL", "test -f /ready"], "interval": 1, "timeout": 1, "retries": 2}}]}));
    let arn = task.task_arn.clone();
    env.fake.push(task);
    let running = env.fake.wait_status(&arn, "RUNNING", T).await;
    assert_eq!(container(&running, "db")["healthStatus"], "HEALTHY");
    let db = inspect(container(&running, "db")["runtimeId"].as_str().unwrap()).unwrap();
    let app = inspect(container(&running, "app")["runtimeId"].as_str().unwrap()).unwrap();
    let ts = |v: &Value, p: &str| {
        time::OffsetDateTime::parse(
            v.pointer(p).and_then(Value::as_str).unwrap(),
            &time::format_description::well_known::Rfc3339,
        )
        .unwrap()
    };
    let healthy_at = db["State"]["Health"]["Log"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["ExitCode"] == 0)
        .map(|l| ts(l, "/End"))
        .unwrap();
    let app_started = ts(&app, "/State/StartedAt");
    let db_started = ts(&db, "/State/StartedAt");
    assert!(
        app_started >= healthy_at,
        "app {app_started} before db healthy {healthy_at}"
    );
    assert!(app_started - db_started >= time::Duration::seconds(2));

    // A health change after RUNNING is reported (same status, new healthStatus).
    docker_exec(
        container(&running, "db")["runtimeId"].as_str().unwrap(),
        "rm /ready",
    );
    let fake = env.fake.clone();
    wait_for("UNHEALTHY report", T, || {
        fake.task_changes(&arn)
            .into_iter()
            .find(|v| v["status"] == "RUNNING" && container(v, "db")["healthStatus"] == "UNHEALTHY")
    })
    .await;
    env.fake.stop(&arn);
    env.fake.wait_status(&arn, "STOPPED", T).await;
    agent.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_endpoint_answers_inside_the_container() {
    if !docker_or_skip("metadata_endpoint_answers_inside_the_container") {
        return;
    }
    let env = Env::new().await;
    let agent = env.start_agent();
    let task = env.fake.task(json!({"family": "meta", "containerDefinitions": [
        {"name": "app", "image": env.image, "memory": 32, "stopTimeout": 1, "command": ["sleep", "3600"]}]}));
    let arn = task.task_arn.clone();
    env.fake.push(task);
    let running = env.fake.wait_status(&arn, "RUNNING", T).await;
    let id = container(&running, "app")["runtimeId"]
        .as_str()
        .unwrap()
        .to_owned();
    let body = docker_exec(&id, "wget -qO- $ECS_CONTAINER_METADATA_URI_V4/task");
    let v: Value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body:?}"));
    assert_eq!(v["TaskARN"], arn.as_str());
    assert_eq!(v["Family"], "meta");
    assert_eq!(v["KnownStatus"], "RUNNING");
    assert_eq!(v["Containers"][0]["DockerId"], id.as_str());
    assert_eq!(v["Containers"][0]["Name"], "app");
    let me: Value = serde_json::from_str(&docker_exec(
        &id,
        "wget -qO- $ECS_CONTAINER_METADATA_URI_V4",
    ))
    .unwrap();
    assert_eq!(me["DockerId"], id.as_str());
    assert_eq!(me["Labels"]["com.amazonaws.ecs.task-arn"], arn.as_str());
    let stats: Value = serde_json::from_str(&docker_exec(
        &id,
        "wget -qO- $ECS_CONTAINER_METADATA_URI_V4/task/stats",
    ))
    .unwrap();
    assert!(stats[&id].is_object(), "{stats}");
    let own: Value = serde_json::from_str(&docker_exec(
        &id,
        "wget -qO- $ECS_CONTAINER_METADATA_URI_V4/stats",
    ))
    .unwrap();
    assert!(own.is_object(), "{own}");
    env.fake.stop(&arn);
    env.fake.wait_status(&arn, "STOPPED", T).await;
    agent.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn awslogs_lines_reach_put_log_events() {
    if !docker_or_skip("awslogs_lines_reach_put_log_events") {
        return;
    }
    let env = Env::new().await;
    let agent = env.start_agent();
    let task = env.fake.task(json!({"family": "logs", "containerDefinitions": [
        {"name": "app", "image": env.image, "memory": 16, "stopTimeout": 1,
         "command": ["sh", "-c", "for i in 1 2 3 4 5; do echo line-$i; done; echo err-line >&2; exec sleep 3600"],
         "logConfiguration": {"logDriver": "awslogs", "options": {
            "awslogs-group": "/gantry/test", "awslogs-stream-prefix": "p",
            "awslogs-create-group": "true", "awslogs-region": "us-east-1"}}}]}));
    let arn = task.task_arn.clone();
    let task_id = arn.rsplit('/').next().unwrap().to_owned();
    env.fake.push(task);
    env.fake.wait_status(&arn, "RUNNING", T).await;
    let fake = env.fake.clone();
    let events = wait_for("six log lines", T, || {
        let l = fake.logs();
        (l.len() >= 6).then_some(l)
    })
    .await;
    let stream = format!("p/app/{task_id}");
    assert!(
        events
            .iter()
            .all(|(g, s, _)| g == "/gantry/test" && *s == stream)
    );
    let msgs: Vec<&str> = events.iter().map(|(_, _, m)| m.as_str()).collect();
    for l in ["line-1", "line-2", "line-3", "line-4", "line-5", "err-line"] {
        assert!(msgs.contains(&l), "{msgs:?}");
    }
    assert_eq!(msgs.len(), 6, "{msgs:?}");
    env.fake.stop(&arn);
    env.fake.wait_status(&arn, "STOPPED", T).await;
    agent.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarted_agent_readopts_running_containers_without_duplicates() {
    if !docker_or_skip("restarted_agent_readopts_running_containers_without_duplicates") {
        return;
    }
    let env = Env::new().await;
    let agent = env.start_agent();
    let mut td = httpd_td(&env.image);
    td["containerDefinitions"][0]["logConfiguration"] = json!({"logDriver": "awslogs", "options": {
        "awslogs-group": "g", "awslogs-stream-prefix": "p", "awslogs-create-group": "true"}});
    td["containerDefinitions"]
        .as_array_mut()
        .unwrap()
        .push(json!({"name": "ticker", "image": env.image, "memory": 16, "stopTimeout": 1, "essential": false,
            "command": ["sh", "-c", "i=0; while true; do i=$((i+1)); echo tick-$i; sleep 0.1; done"],
            "logConfiguration": {"logDriver": "awslogs", "options": {
                "awslogs-group": "g", "awslogs-stream-prefix": "p", "awslogs-create-group": "true"}}}));
    let task = env.fake.task(td);
    let arn = task.task_arn.clone();
    env.fake.push(task);
    let running = env.fake.wait_status(&arn, "RUNNING", T).await;
    let port = host_port(&running, "web");
    let before: Vec<String> = {
        let mut v = containers_of(&env.fake.instance_arn);
        v.sort();
        v
    };
    assert_eq!(before.len(), 2);
    let fake = env.fake.clone();
    wait_for("some ticks shipped", T, || {
        (fake
            .logs()
            .iter()
            .filter(|(_, _, m)| m.starts_with("tick-"))
            .count()
            > 5)
        .then_some(())
    })
    .await;

    // kill -9: the agent's future is dropped with no cleanup.
    agent.abort();
    let _ = agent.await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let reports_before = env.fake.task_changes(&arn).len();

    let agent = env.start_agent();
    let fake = env.fake.clone();
    wait_for("second registration", T, || {
        (fake.state.lock().unwrap().registrations.len() >= 2).then_some(())
    })
    .await;
    let regs = env.fake.state.lock().unwrap().registrations.clone();
    assert_eq!(
        regs[1]["containerInstanceArn"],
        env.fake.instance_arn.as_str()
    );
    // The re-adopted task is reported RUNNING again, with the same containers.
    let fake = env.fake.clone();
    let again = wait_for("RUNNING report after restart", T, || {
        fake.task_changes(&arn)
            .into_iter()
            .skip(reports_before)
            .find(|v| v["status"] == "RUNNING")
    })
    .await;
    assert_eq!(
        container(&again, "web")["runtimeId"],
        container(&running, "web")["runtimeId"]
    );
    assert_eq!(host_port(&again, "web"), port);
    let mut after = containers_of(&env.fake.instance_arn);
    after.sort();
    assert_eq!(after, before, "no container added or lost");
    for id in &after {
        assert_eq!(inspect(id).unwrap()["State"]["Running"], true);
        assert_eq!(inspect(id).unwrap()["RestartCount"], 0);
    }
    assert!(http_get(port).await.contains("hello-gantry"));

    // Log lines: none lost, none repeated across the restart.
    let fake = env.fake.clone();
    let seen = fake
        .logs()
        .iter()
        .filter(|(_, _, m)| m.starts_with("tick-"))
        .count();
    wait_for("ticks after restart", T, || {
        (fake
            .logs()
            .iter()
            .filter(|(_, _, m)| m.starts_with("tick-"))
            .count()
            > seen + 10)
            .then_some(())
    })
    .await;
    let ticks: Vec<u64> = env
        .fake
        .logs()
        .iter()
        .filter_map(|(_, _, m)| m.strip_prefix("tick-")?.parse().ok())
        .collect();
    let max = *ticks.iter().max().unwrap();
    let mut sorted = ticks.clone();
    sorted.sort_unstable();
    sorted.dedup();
    assert_eq!(sorted.len(), ticks.len(), "duplicated log lines");
    assert_eq!(sorted, (1..=max).collect::<Vec<_>>(), "lost log lines");

    env.fake.stop(&arn);
    env.fake.wait_status(&arn, "STOPPED", T).await;
    wait_for("containers removed", T, || {
        containers_of(&env.fake.instance_arn)
            .is_empty()
            .then_some(())
    })
    .await;
    agent.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn containers_of_tasks_stopped_while_away_are_removed() {
    if !docker_or_skip("containers_of_tasks_stopped_while_away_are_removed") {
        return;
    }
    let env = Env::new().await;
    let agent = env.start_agent();
    let task = env.fake.task(json!({"family": "away", "containerDefinitions": [
        {"name": "app", "image": env.image, "memory": 16, "stopTimeout": 1, "command": ["sleep", "3600"]}]}));
    let arn = task.task_arn.clone();
    env.fake.push(task);
    env.fake.wait_status(&arn, "RUNNING", T).await;
    assert_eq!(containers_of(&env.fake.instance_arn).len(), 1);
    agent.abort();
    let _ = agent.await;

    // Stopped (and expired) on the server while the agent was down; plus a foreign container
    // that carries no Gantry label must survive.
    env.fake.forget(&arn);
    let foreign = format!(
        "gantry-agent-test-foreign-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    );
    let out = std::process::Command::new("docker")
        .args([
            "run",
            "-d",
            "--name",
            &foreign,
            "--label",
            "com.amazonaws.ecs.cluster=x",
            &env.image,
            "sleep",
            "60",
        ])
        .output()
        .unwrap();
    assert!(out.status.success());

    let agent = env.start_agent();
    wait_for("orphan removal", T, || {
        containers_of(&env.fake.instance_arn)
            .is_empty()
            .then_some(())
    })
    .await;
    assert_eq!(inspect(&foreign).unwrap()["State"]["Running"], true);
    std::process::Command::new("docker")
        .args(["rm", "-f", &foreign])
        .output()
        .unwrap();
    agent.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_essential_exit_is_reported_alone_and_the_task_keeps_running() {
    if !docker_or_skip("non_essential_exit_is_reported_alone_and_the_task_keeps_running") {
        return;
    }
    let env = Env::new().await;
    let agent = env.start_agent();
    let task = env.fake.task(json!({"family": "sidecar", "containerDefinitions": [
        {"name": "main", "image": env.image, "memory": 16, "stopTimeout": 1, "command": ["sleep", "3600"]},
        {"name": "job", "image": env.image, "memory": 16, "essential": false,
         "command": ["sh", "-c", "sleep 1; exit 5"]}]}));
    let arn = task.task_arn.clone();
    env.fake.push(task);
    let fake = env.fake.clone();
    let change = wait_for("container state change", T, || {
        fake.state
            .lock()
            .unwrap()
            .container_changes
            .iter()
            .find(|c| c["task"] == arn.as_str() && c["containerName"] == "job")
            .cloned()
    })
    .await;
    assert_eq!(change["status"], "STOPPED");
    assert_eq!(change["exitCode"], 5);
    assert_eq!(change["cluster"], env.fake.cluster.as_str());
    assert!(
        env.fake
            .task_changes(&arn)
            .iter()
            .all(|v| v["status"] != "STOPPED")
    );
    env.fake.stop(&arn);
    let stopped = env.fake.wait_status(&arn, "STOPPED", T).await;
    assert_eq!(stopped["reason"], "Task stopped by the control plane");
    agent.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn privileged_container_is_refused() {
    if !docker_or_skip("privileged_container_is_refused") {
        return;
    }
    let env = Env::new().await;
    let agent = env.start_agent();
    let task = env.fake.task(json!({"family": "priv", "containerDefinitions": [
        {"name": "app", "image": env.image, "memory": 16, "privileged": true, "command": ["sleep", "5"]}]}));
    let arn = task.task_arn.clone();
    env.fake.push(task);
    let stopped = env.fake.wait_status(&arn, "STOPPED", T).await;
    let reason = stopped["reason"].as_str().unwrap();
    assert!(
        reason.starts_with("CannotCreateContainerError: "),
        "{reason}"
    );
    assert!(containers_of(&env.fake.instance_arn).is_empty());
    agent.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_stream_reconnects_and_full_state_starts_new_tasks() {
    if !docker_or_skip("lost_stream_reconnects_and_full_state_starts_new_tasks") {
        return;
    }
    let env = Env::new().await;
    let agent = env.start_agent();
    let fake = env.fake.clone();
    wait_for("first connect", T, || (fake.connects() >= 1).then_some(())).await;
    env.fake.disconnect_all();
    // Assigned while the stream is down: only the next full state carries it.
    let task = env.fake.task(json!({"family": "later", "containerDefinitions": [
        {"name": "app", "image": env.image, "memory": 16, "stopTimeout": 1, "command": ["sleep", "3600"]}]}));
    let arn = task.task_arn.clone();
    env.fake
        .state
        .lock()
        .unwrap()
        .tasks
        .insert(arn.clone(), task);
    wait_for("reconnect", T, || (fake.connects() >= 2).then_some(())).await;
    env.fake.wait_status(&arn, "RUNNING", T).await;
    env.fake.stop(&arn);
    env.fake.wait_status(&arn, "STOPPED", T).await;
    agent.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn own_registry_images_use_a_token_and_prefer_the_cached_copy() {
    if !docker_or_skip("own_registry_images_use_a_token_and_prefer_the_cached_copy") {
        return;
    }
    let mut env = Env::new().await;
    // An image of Gantry's own registry (the fake's host:port), present locally. The fake is no
    // registry, so the digest check fails and the cached copy is used.
    let image = format!(
        "{}/busybox:{}",
        env.fake.authority(),
        &env.image[env.image.len() - 12..]
    );
    env.tag(&image);
    let agent = env.start_agent();
    let task = env.fake.task(json!({"family": "own", "containerDefinitions": [
        {"name": "app", "image": image, "memory": 16, "stopTimeout": 1, "command": ["sleep", "3600"],
         "logConfiguration": {"logDriver": "awslogs", "options": {
            "awslogs-group": "own", "awslogs-create-group": "true"}}}]}));
    let arn = task.task_arn.clone();
    env.fake.push(task);
    env.fake.wait_status(&arn, "RUNNING", T).await;
    assert_eq!(env.fake.signed_for("GetAuthorizationToken"), vec!["ecr"]);
    assert!(
        env.fake
            .signed_for("RegisterContainerInstance")
            .iter()
            .all(|s| s == "ecs")
    );
    assert!(
        env.fake
            .signed_for("SubmitTaskStateChange")
            .iter()
            .all(|s| s == "ecs")
    );
    assert!(env.fake.signed_for("connect").iter().all(|s| s == "ecs"));
    let fake = env.fake.clone();
    wait_for("log stream creation", T, || {
        let s = fake.signed_for("CreateLogStream");
        (!s.is_empty()).then_some(s)
    })
    .await
    .iter()
    .for_each(|s| assert_eq!(s, "logs"));
    env.fake.stop(&arn);
    env.fake.wait_status(&arn, "STOPPED", T).await;
    agent.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn links_start_the_target_first_and_resolve_its_alias() {
    if !docker_or_skip("links_start_the_target_first_and_resolve_its_alias") {
        return;
    }
    let env = Env::new().await;
    let agent = env.start_agent();
    // The linking container comes first: the agent must create and start `app` before it.
    let task = env.fake.task(json!({"family": "linked", "containerDefinitions": [
        {"name": "proxy", "image": env.image, "memory": 16, "stopTimeout": 1,
         "links": ["app:backend"], "command": ["sleep", "3600"]},
        {"name": "app", "image": env.image, "memory": 16, "stopTimeout": 1,
         "command": ["sh", "-c", "mkdir -p /www && echo linked-ok > /www/index.html && exec httpd -f -p 8080 -h /www"]}]}));
    let arn = task.task_arn.clone();
    env.fake.push(task);
    let running = env.fake.wait_status(&arn, "RUNNING", T).await;
    let proxy_id = container(&running, "proxy")["runtimeId"]
        .as_str()
        .unwrap()
        .to_owned();
    let app_id = container(&running, "app")["runtimeId"]
        .as_str()
        .unwrap()
        .to_owned();
    let proxy = inspect(&proxy_id).unwrap();
    let app = inspect(&app_id).unwrap();
    let links = proxy["HostConfig"]["Links"].as_array().unwrap();
    assert_eq!(links.len(), 1, "{links:?}");
    let link = links[0].as_str().unwrap();
    assert!(
        link.starts_with(&format!("{}:", app["Name"].as_str().unwrap()))
            && link.ends_with("/backend"),
        "{link}"
    );
    let started = |v: &Value| {
        time::OffsetDateTime::parse(
            v["State"]["StartedAt"].as_str().unwrap(),
            &time::format_description::well_known::Rfc3339,
        )
        .unwrap()
    };
    assert!(
        started(&app) <= started(&proxy),
        "app started {} after proxy {}",
        started(&app),
        started(&proxy)
    );
    let fetched = wait_for("the alias answers", T, || {
        // busybox-static's wget cannot resolve names (its static resolver); nc can.
        let out = docker_exec(
            &proxy_id,
            "printf 'GET /index.html HTTP/1.0\\r\\n\\r\\n' | nc backend 8080 2>&1",
        );
        out.contains("linked-ok").then_some(out)
    })
    .await;
    assert!(fetched.contains("linked-ok"));
    env.fake.stop(&arn);
    env.fake.wait_status(&arn, "STOPPED", T).await;
    agent.abort();
}
