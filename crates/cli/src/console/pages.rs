//! The console's pages and actions. Each reads through the signed-in user's own API calls.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use gantry_agent::client::{CallError, Service};
use serde_json::{Value, json};

use super::{Console, Params, Segments2, Session, redirect, require, require_csrf};

/// An API failure as the page shows it, with the status it answers.
fn failed(e: &CallError) -> (StatusCode, String) {
    match e {
        CallError::Aws {
            status,
            code,
            message,
        } => {
            let s = if *status == 403 || code.contains("AccessDenied") {
                StatusCode::FORBIDDEN
            } else {
                StatusCode::BAD_REQUEST
            };
            (s, format!("{code}: {message}"))
        }
        CallError::Transport(m) => (
            StatusCode::BAD_GATEWAY,
            format!("the API did not answer: {m}"),
        ),
    }
}

fn error_page(console: &Console, s: &Session, e: &CallError) -> Response {
    let (status, msg) = failed(e);
    console.render(status, "layout.html", Some(s), json!({"error": msg}))
}

async fn ecs(s: &Session, op: &str, body: Value) -> Result<Value, CallError> {
    s.api.call(Service::Ecs, op, &body).await
}

/// Every page of an ECS list operation.
async fn list_all(s: &Session, op: &str, body: Value, key: &str) -> Result<Vec<String>, CallError> {
    let mut out = Vec::new();
    let mut body = body;
    loop {
        let page = ecs(s, op, body.clone()).await?;
        out.extend(crate::user::conn::strings(&page[key]));
        match page["nextToken"].as_str() {
            Some(t) => body["nextToken"] = t.into(),
            None => return Ok(out),
        }
    }
}

async fn describe_tasks(
    s: &Session,
    cluster: &str,
    arns: &[String],
) -> Result<Vec<Value>, CallError> {
    let mut out = Vec::new();
    for chunk in arns.chunks(100) {
        let page = ecs(
            s,
            "DescribeTasks",
            json!({"cluster": cluster, "tasks": chunk}),
        )
        .await?;
        out.extend(page["tasks"].as_array().cloned().unwrap_or_default());
    }
    for t in &mut out {
        let id = crate::user::conn::short(t["taskArn"].as_str().unwrap_or("")).to_owned();
        t["id"] = id.into();
    }
    out.sort_by(|a, b| {
        (
            a["desiredStatus"] != "RUNNING",
            a["group"].as_str(),
            a["id"].as_str(),
        )
            .cmp(&(
                b["desiredStatus"] != "RUNNING",
                b["group"].as_str(),
                b["id"].as_str(),
            ))
    });
    Ok(out)
}

/// The tasks of `cluster` (of `service` when given), running then recently stopped.
async fn tasks_of(
    s: &Session,
    cluster: &str,
    service: Option<&str>,
) -> Result<Vec<Value>, CallError> {
    let mut arns = Vec::new();
    for status in ["RUNNING", "STOPPED"] {
        let mut body = json!({"cluster": cluster, "desiredStatus": status});
        if let Some(name) = service {
            body["serviceName"] = name.into();
        }
        arns.extend(list_all(s, "ListTasks", body, "taskArns").await?);
    }
    describe_tasks(s, cluster, &arns).await
}

pub async fn clusters(State(console): State<Arc<Console>>, headers: HeaderMap) -> Response {
    let s = match require(&console, &headers) {
        Ok(s) => s,
        Err(r) => return *r,
    };
    let result = async {
        let arns = list_all(&s, "ListClusters", json!({}), "clusterArns").await?;
        let mut out = Vec::new();
        for chunk in arns.chunks(100) {
            let page = ecs(&s, "DescribeClusters", json!({"clusters": chunk})).await?;
            out.extend(page["clusters"].as_array().cloned().unwrap_or_default());
        }
        Ok::<_, CallError>(out)
    }
    .await;
    match result {
        Ok(clusters) => console.render(
            StatusCode::OK,
            "clusters.html",
            Some(&s),
            json!({"clusters": clusters}),
        ),
        Err(e) => error_page(&console, &s, &e),
    }
}

fn resource(i: &Value, set: &str, name: &str) -> Value {
    i[set]
        .as_array()
        .into_iter()
        .flatten()
        .find(|r| r["name"] == name)
        .map(|r| r["integerValue"].clone())
        .unwrap_or(Value::Null)
}

pub async fn cluster(
    State(console): State<Arc<Console>>,
    headers: HeaderMap,
    Path(cluster): Path<String>,
) -> Response {
    let s = match require(&console, &headers) {
        Ok(s) => s,
        Err(r) => return *r,
    };
    let result = async {
        let names = list_all(&s, "ListServices", json!({"cluster": cluster}), "serviceArns").await?;
        let mut services = Vec::new();
        for chunk in names.chunks(10) {
            let page = ecs(&s, "DescribeServices", json!({"cluster": cluster, "services": chunk})).await?;
            services.extend(page["services"].as_array().cloned().unwrap_or_default());
        }
        for svc in &mut services {
            let rollout = svc["deployments"]
                .as_array()
                .and_then(|d| d.iter().find(|d| d["status"] == "PRIMARY"))
                .and_then(|d| d["rolloutState"].as_str())
                .unwrap_or("")
                .to_owned();
            svc["rollout"] = rollout.into();
        }
        services.sort_by(|a, b| a["serviceName"].as_str().cmp(&b["serviceName"].as_str()));
        let tasks = tasks_of(&s, &cluster, None).await?;
        let arns = list_all(&s, "ListContainerInstances", json!({"cluster": cluster}), "containerInstanceArns").await?;
        let mut instances = Vec::new();
        for chunk in arns.chunks(100) {
            let page = ecs(&s, "DescribeContainerInstances", json!({"cluster": cluster, "containerInstances": chunk})).await?;
            instances.extend(page["containerInstances"].as_array().cloned().unwrap_or_default());
        }
        for i in &mut instances {
            let custom: Vec<String> = i["attributes"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|a| {
                    let n = a["name"].as_str().unwrap_or("");
                    !n.starts_with("ecs.") && !n.starts_with("com.amazonaws.ecs.")
                })
                .map(|a| format!("{}={}", a["name"].as_str().unwrap_or(""), a["value"].as_str().unwrap_or("")))
                .collect();
            i["custom_attributes"] = custom.join(", ").into();
            i["cpu_free"] = resource(i, "remainingResources", "CPU");
            i["cpu_total"] = resource(i, "registeredResources", "CPU");
            i["mem_free"] = resource(i, "remainingResources", "MEMORY");
            i["mem_total"] = resource(i, "registeredResources", "MEMORY");
            i["id"] = crate::user::conn::short(i["containerInstanceArn"].as_str().unwrap_or("")).to_owned().into();
        }
        Ok::<_, CallError>(json!({"cluster": cluster, "services": services, "tasks": tasks, "instances": instances}))
    }
    .await;
    match result {
        Ok(ctx) => console.render(StatusCode::OK, "cluster.html", Some(&s), ctx),
        Err(e) => error_page(&console, &s, &e),
    }
}

/// The service page's context.
async fn service_ctx(s: &Session, cluster: &str, name: &str) -> Result<Option<Value>, CallError> {
    let page = ecs(
        s,
        "DescribeServices",
        json!({"cluster": cluster, "services": [name]}),
    )
    .await?;
    let Some(service) = page["services"].as_array().and_then(|a| a.first()).cloned() else {
        return Ok(None);
    };
    let tasks = tasks_of(s, cluster, Some(name)).await?;
    let mut targets = Vec::new();
    for lb in service["loadBalancers"].as_array().into_iter().flatten() {
        let Some(tg) = lb["targetGroupArn"].as_str() else {
            continue;
        };
        let xml = s
            .api
            .call_query(
                Service::Elbv2,
                "DescribeTargetHealth",
                "2015-12-01",
                &[("TargetGroupArn", tg)],
            )
            .await?;
        for m in xml.split("<member>").skip(1) {
            targets.push(json!({
                "group": tg.rsplit(':').next().unwrap_or(tg),
                "id": super::element(m, "Id"),
                "port": super::element(m, "Port"),
                "state": super::element(m, "State"),
            }));
        }
    }
    Ok(Some(
        json!({"cluster": cluster, "service": service, "tasks": tasks, "targets": targets}),
    ))
}

async fn service_page(
    console: &Console,
    s: &Session,
    cluster: &str,
    name: &str,
    status: StatusCode,
    error: Option<String>,
    notice: Option<String>,
) -> Response {
    match service_ctx(s, cluster, name).await {
        Ok(Some(mut ctx)) => {
            ctx["error"] = error.into();
            ctx["notice"] = notice.into();
            console.render(status, "service.html", Some(s), ctx)
        }
        Ok(None) => console.render(
            StatusCode::NOT_FOUND,
            "layout.html",
            Some(s),
            json!({"error": format!("service {name} not found in cluster {cluster}")}),
        ),
        Err(e) => error_page(console, s, &e),
    }
}

pub async fn service(
    State(console): State<Arc<Console>>,
    headers: HeaderMap,
    Path((cluster, name)): Segments2,
    params: Params,
) -> Response {
    let s = match require(&console, &headers) {
        Ok(s) => s,
        Err(r) => return *r,
    };
    let notice = params.get("notice").cloned();
    service_page(&console, &s, &cluster, &name, StatusCode::OK, None, notice).await
}

/// Runs a change; on success back to `back` with a notice, else the refusal on `page`.
async fn act(
    console: &Console,
    s: &Session,
    op: &str,
    body: Value,
    back: String,
    notice: &str,
) -> Result<Response, (StatusCode, String)> {
    match ecs(s, op, body).await {
        Ok(_) => Ok(redirect(&format!(
            "{back}?notice={}",
            form_urlencoded::byte_serialize(notice.as_bytes()).collect::<String>()
        ))),
        Err(e) => {
            let _ = console;
            Err(failed(&e))
        }
    }
}

pub async fn scale(
    State(console): State<Arc<Console>>,
    headers: HeaderMap,
    Path((cluster, name)): Segments2,
    body: Bytes,
) -> Response {
    let fields = super::form(&body);
    let s = match require_csrf(&console, &headers, &fields) {
        Ok(s) => s,
        Err(r) => return *r,
    };
    let Some(count) = fields
        .get("desired_count")
        .and_then(|v| v.trim().parse::<u32>().ok())
    else {
        return service_page(
            &console,
            &s,
            &cluster,
            &name,
            StatusCode::BAD_REQUEST,
            Some("the desired count must be a whole number".into()),
            None,
        )
        .await;
    };
    let back = format!("/console/clusters/{cluster}/services/{name}");
    match act(
        &console,
        &s,
        "UpdateService",
        json!({"cluster": cluster, "service": name, "desiredCount": count}),
        back,
        &format!("desired count set to {count}"),
    )
    .await
    {
        Ok(r) => r,
        Err((status, msg)) => {
            service_page(&console, &s, &cluster, &name, status, Some(msg), None).await
        }
    }
}

pub async fn force_deployment(
    State(console): State<Arc<Console>>,
    headers: HeaderMap,
    Path((cluster, name)): Segments2,
    body: Bytes,
) -> Response {
    let fields = super::form(&body);
    let s = match require_csrf(&console, &headers, &fields) {
        Ok(s) => s,
        Err(r) => return *r,
    };
    let back = format!("/console/clusters/{cluster}/services/{name}");
    match act(
        &console,
        &s,
        "UpdateService",
        json!({"cluster": cluster, "service": name, "forceNewDeployment": true}),
        back,
        "new deployment started",
    )
    .await
    {
        Ok(r) => r,
        Err((status, msg)) => {
            service_page(&console, &s, &cluster, &name, status, Some(msg), None).await
        }
    }
}

async fn task_page(
    console: &Console,
    s: &Session,
    cluster: &str,
    id: &str,
    status: StatusCode,
    error: Option<String>,
    notice: Option<String>,
) -> Response {
    let tasks = match describe_tasks(s, cluster, &[id.to_owned()]).await {
        Ok(t) => t,
        Err(e) => return error_page(console, s, &e),
    };
    let Some(task) = tasks.into_iter().next() else {
        return console.render(
            StatusCode::NOT_FOUND,
            "layout.html",
            Some(s),
            json!({"error": format!("task {id} not found in cluster {cluster}")}),
        );
    };
    let has_logs = match task_streams(s, &task).await {
        Ok(st) => !st.is_empty(),
        Err(e) => return error_page(console, s, &e),
    };
    console.render(status, "task.html", Some(s), json!({"cluster": cluster, "task": task, "has_logs": has_logs, "error": error, "notice": notice}))
}

pub async fn task(
    State(console): State<Arc<Console>>,
    headers: HeaderMap,
    Path((cluster, id)): Segments2,
    params: Params,
) -> Response {
    let s = match require(&console, &headers) {
        Ok(s) => s,
        Err(r) => return *r,
    };
    task_page(
        &console,
        &s,
        &cluster,
        &id,
        StatusCode::OK,
        None,
        params.get("notice").cloned(),
    )
    .await
}

/// The awslogs streams of a task: `(group, stream, label)`.
async fn task_streams(
    s: &Session,
    task: &Value,
) -> Result<Vec<(String, String, String)>, CallError> {
    let td = task["taskDefinitionArn"].as_str().unwrap_or("");
    let d = ecs(s, "DescribeTaskDefinition", json!({"taskDefinition": td})).await?;
    Ok(crate::user::logs::task_streams(task, &d["taskDefinition"])
        .into_iter()
        .map(|st| (st.group, st.name, st.label))
        .collect())
}

/// `GET .../logs?since=MS`: the task's log events from `since` on, as JSON for the page's
/// follower.
pub async fn task_logs(
    State(console): State<Arc<Console>>,
    headers: HeaderMap,
    Path((cluster, id)): Segments2,
    params: Params,
) -> Response {
    let s = match require(&console, &headers) {
        Ok(s) => s,
        Err(r) => return *r,
    };
    let since: i64 = params
        .get("since")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let result = async {
        let task = describe_tasks(&s, &cluster, std::slice::from_ref(&id)).await?.into_iter().next();
        let Some(task) = task else { return Ok(json!({"events": []})) };
        let streams = task_streams(&s, &task).await?;
        let mut by_group: HashMap<String, Vec<(String, String)>> = HashMap::new();
        for (g, n, l) in streams {
            by_group.entry(g).or_default().push((n, l));
        }
        let mut events = Vec::new();
        let mut newest = since;
        for (group, streams) in by_group {
            let labels: HashMap<&str, &str> = streams.iter().map(|(n, l)| (n.as_str(), l.as_str())).collect();
            let names: Vec<&str> = streams.iter().map(|(n, _)| n.as_str()).collect();
            let page = match s.api.call(Service::Logs, "FilterLogEvents", &json!({"logGroupName": group, "logStreamNames": names, "startTime": since})).await {
                Ok(p) => p,
                Err(e) if e.code() == Some("ResourceNotFoundException") => continue,
                Err(e) => return Err(e),
            };
            for e in page["events"].as_array().into_iter().flatten() {
                let ts = e["timestamp"].as_i64().unwrap_or(0);
                newest = newest.max(ts);
                events.push(json!({
                    "id": e["eventId"], "timestamp": ts,
                    "label": labels.get(e["logStreamName"].as_str().unwrap_or("")).copied().unwrap_or(""),
                    "message": e["message"].as_str().unwrap_or("").trim_end_matches('\n'),
                }));
            }
        }
        events.sort_by_key(|e| e["timestamp"].as_i64());
        Ok::<_, CallError>(json!({"events": events, "newest": newest}))
    }
    .await;
    match result {
        Ok(v) => (
            StatusCode::OK,
            [
                (axum::http::header::CONTENT_TYPE, "application/json"),
                (axum::http::header::CACHE_CONTROL, "no-store"),
            ],
            v.to_string(),
        )
            .into_response(),
        Err(e) => {
            let (status, msg) = failed(&e);
            (
                status,
                [(axum::http::header::CONTENT_TYPE, "application/json")],
                json!({"error": msg}).to_string(),
            )
                .into_response()
        }
    }
}

pub async fn stop_task(
    State(console): State<Arc<Console>>,
    headers: HeaderMap,
    Path((cluster, id)): Segments2,
    body: Bytes,
) -> Response {
    let fields = super::form(&body);
    let s = match require_csrf(&console, &headers, &fields) {
        Ok(s) => s,
        Err(r) => return *r,
    };
    let back = format!("/console/clusters/{cluster}/tasks/{id}");
    match act(
        &console,
        &s,
        "StopTask",
        json!({"cluster": cluster, "task": id, "reason": "Stopped from the console"}),
        back,
        "task stopping",
    )
    .await
    {
        Ok(r) => r,
        Err((status, msg)) => task_page(&console, &s, &cluster, &id, status, Some(msg), None).await,
    }
}

pub async fn drain(
    State(console): State<Arc<Console>>,
    headers: HeaderMap,
    Path((cluster, instance)): Segments2,
    body: Bytes,
) -> Response {
    let fields = super::form(&body);
    let s = match require_csrf(&console, &headers, &fields) {
        Ok(s) => s,
        Err(r) => return *r,
    };
    match ecs(
        &s,
        "UpdateContainerInstancesState",
        json!({"cluster": cluster, "containerInstances": [instance], "status": "DRAINING"}),
    )
    .await
    {
        Ok(_) => redirect(&format!("/console/clusters/{cluster}")),
        Err(e) => error_page(&console, &s, &e),
    }
}

pub async fn repositories(State(console): State<Arc<Console>>, headers: HeaderMap) -> Response {
    let s = match require(&console, &headers) {
        Ok(s) => s,
        Err(r) => return *r,
    };
    let result = async {
        let page = s
            .api
            .call(Service::Ecr, "DescribeRepositories", &json!({}))
            .await?;
        let mut repos = page["repositories"].as_array().cloned().unwrap_or_default();
        for r in &mut repos {
            let images = s
                .api
                .call(
                    Service::Ecr,
                    "DescribeImages",
                    &json!({"repositoryName": r["repositoryName"]}),
                )
                .await?;
            r["images"] = images["imageDetails"].clone();
        }
        Ok::<_, CallError>(repos)
    }
    .await;
    match result {
        Ok(repos) => console.render(
            StatusCode::OK,
            "repositories.html",
            Some(&s),
            json!({"repositories": repos}),
        ),
        Err(e) => error_page(&console, &s, &e),
    }
}

pub async fn load_balancers(State(console): State<Arc<Console>>, headers: HeaderMap) -> Response {
    let s = match require(&console, &headers) {
        Ok(s) => s,
        Err(r) => return *r,
    };
    let result = async {
        let xml = s.api.call_query(Service::Elbv2, "DescribeLoadBalancers", "2015-12-01", &[]).await?;
        let lbs: Vec<Value> = xml
            .split("<member>")
            .skip(1)
            .filter_map(|m| {
                Some(json!({
                    "name": super::element(m, "LoadBalancerName")?,
                    "type": super::element(m, "Type"),
                    "state": super::element(m, "Code"),
                    "dns": super::element(m, "DNSName"),
                }))
            })
            .collect();
        let xml = s.api.call_query(Service::Elbv2, "DescribeTargetGroups", "2015-12-01", &[]).await?;
        let mut groups = Vec::new();
        for m in xml.split("<member>").skip(1) {
            let (Some(arn), Some(name)) = (super::element(m, "TargetGroupArn"), super::element(m, "TargetGroupName")) else { continue };
            let health = s.api.call_query(Service::Elbv2, "DescribeTargetHealth", "2015-12-01", &[("TargetGroupArn", &arn)]).await?;
            let targets: Vec<Value> = health
                .split("<member>")
                .skip(1)
                .map(|t| json!({"id": super::element(t, "Id"), "port": super::element(t, "Port"), "state": super::element(t, "State"), "reason": super::element(t, "Description")}))
                .collect();
            groups.push(json!({"name": name, "protocol": super::element(m, "Protocol"), "port": super::element(m, "Port"), "targets": targets}));
        }
        Ok::<_, CallError>(json!({"load_balancers": lbs, "target_groups": groups}))
    }
    .await;
    match result {
        Ok(ctx) => console.render(StatusCode::OK, "load_balancers.html", Some(&s), ctx),
        Err(e) => error_page(&console, &s, &e),
    }
}

pub async fn log_groups(
    State(console): State<Arc<Console>>,
    headers: HeaderMap,
    params: Params,
) -> Response {
    let s = match require(&console, &headers) {
        Ok(s) => s,
        Err(r) => return *r,
    };
    let group = params.get("group").cloned().filter(|g| !g.is_empty());
    let q = params.get("q").cloned().unwrap_or_default();
    let result = async {
        let page = s
            .api
            .call(Service::Logs, "DescribeLogGroups", &json!({}))
            .await?;
        let groups = page["logGroups"].clone();
        let mut events = Value::Array(Vec::new());
        if let Some(g) = &group {
            let mut body = json!({"logGroupName": g, "limit": 200});
            if !q.is_empty() {
                body["filterPattern"] = q.clone().into();
            }
            events = s.api.call(Service::Logs, "FilterLogEvents", &body).await?["events"].clone();
        }
        Ok::<_, CallError>(json!({"groups": groups, "group": group, "q": q, "events": events}))
    }
    .await;
    match result {
        Ok(ctx) => console.render(StatusCode::OK, "log_groups.html", Some(&s), ctx),
        Err(e) => error_page(&console, &s, &e),
    }
}
