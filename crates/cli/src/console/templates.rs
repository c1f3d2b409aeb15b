//! The console's pages (minijinja, auto-escaped HTML). One layout, one template per page.

pub const TEMPLATES: &[(&str, &str)] = &[
    ("layout.html", LAYOUT),
    ("login.html", LOGIN),
    ("clusters.html", CLUSTERS),
    ("cluster.html", CLUSTER),
    ("service.html", SERVICE),
    ("task.html", TASK),
    ("repositories.html", REPOSITORIES),
    ("load_balancers.html", LOAD_BALANCERS),
    ("log_groups.html", LOG_GROUPS),
];

const LAYOUT: &str = r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{% block title %}Gantry{% endblock %} · Gantry</title>
<style>
body{font-family:system-ui,sans-serif;margin:0;color:#1d2733;background:#f6f7f9}
header{background:#1d2733;color:#fff;padding:.6rem 1rem;display:flex;flex-wrap:wrap;gap:1rem;align-items:center}
header a{color:#cfe3ff;text-decoration:none}header .who{margin-left:auto;font-size:.85rem}
main{padding:1rem;max-width:1200px;margin:auto}
table{border-collapse:collapse;width:100%;background:#fff;margin:.5rem 0 1.5rem;font-size:.9rem}
th,td{text-align:left;padding:.35rem .5rem;border-bottom:1px solid #e3e6ea;vertical-align:top}
th{background:#eef1f4}.scroll{overflow-x:auto}
.RUNNING,.ACTIVE,.COMPLETED,.healthy,.active{color:#17803d;font-weight:600}
.STOPPED,.FAILED,.unhealthy,.INACTIVE{color:#b42318;font-weight:600}
.PENDING,.IN_PROGRESS,.DRAINING,.PROVISIONING{color:#b54708;font-weight:600}
.error{background:#fee4e2;border:1px solid #b42318;padding:.6rem;margin:.5rem 0}
.notice{background:#d1fadf;border:1px solid #17803d;padding:.6rem;margin:.5rem 0}
form.inline{display:inline-flex;gap:.4rem;align-items:center;margin:.2rem .5rem .2rem 0}
button{padding:.3rem .8rem}input{padding:.3rem}
pre{background:#111;color:#e6e6e6;padding:.6rem;max-height:28rem;overflow:auto;white-space:pre-wrap}
</style></head><body>
<header><strong>Gantry</strong>
{% if who %}<a href="/console/">Clusters</a><a href="/console/repositories">Repositories</a>
<a href="/console/load-balancers">Load balancers</a><a href="/console/log-groups">Log groups</a>
<span class="who">{{ who }} <form class="inline" method="post" action="/console/logout"><input type="hidden" name="csrf" value="{{ csrf }}"><button>Sign out</button></form></span>{% endif %}
</header><main>
{% if error %}<div class="error" role="alert">{{ error }}</div>{% endif %}
{% if notice %}<div class="notice" role="status">{{ notice }}</div>{% endif %}
{% block body %}{% endblock %}
</main></body></html>"#;

const LOGIN: &str = r#"{% extends "layout.html" %}{% block title %}Sign in{% endblock %}{% block body %}
<h1>Sign in</h1>
<form method="post" action="/console/login">
<p><label>Access key ID<br><input name="access_key_id" autocomplete="username" required size="30"></label></p>
<p><label>Secret access key<br><input name="secret_access_key" type="password" autocomplete="current-password" required size="44"></label></p>
<p><button type="submit">Sign in</button></p></form>{% endblock %}"#;

const CLUSTERS: &str = r#"{% extends "layout.html" %}{% block title %}Clusters{% endblock %}{% block body %}
<h1>Clusters</h1><div class="scroll"><table><tr><th>Cluster</th><th>Status</th><th>Instances</th><th>Services</th><th>Running</th><th>Pending</th></tr>
{% for c in clusters %}<tr><td><a href="/console/clusters/{{ c.clusterName }}">{{ c.clusterName }}</a></td><td class="{{ c.status }}">{{ c.status }}</td>
<td>{{ c.registeredContainerInstancesCount }}</td><td>{{ c.activeServicesCount }}</td><td>{{ c.runningTasksCount }}</td><td>{{ c.pendingTasksCount }}</td></tr>
{% else %}<tr><td colspan="6">No clusters.</td></tr>{% endfor %}</table></div>{% endblock %}"#;

const CLUSTER: &str = r#"{% extends "layout.html" %}{% block title %}{{ cluster }}{% endblock %}{% block body %}
<h1>Cluster {{ cluster }}</h1>
<h2>Services</h2><div class="scroll"><table><tr><th>Service</th><th>Status</th><th>Desired</th><th>Running</th><th>Pending</th><th>Task definition</th><th>Rollout</th></tr>
{% for s in services %}<tr><td><a href="/console/clusters/{{ cluster }}/services/{{ s.serviceName }}">{{ s.serviceName }}</a></td><td class="{{ s.status }}">{{ s.status }}</td>
<td>{{ s.desiredCount }}</td><td>{{ s.runningCount }}</td><td>{{ s.pendingCount }}</td><td>{{ s.taskDefinition | short }}</td><td class="{{ s.rollout }}">{{ s.rollout }}</td></tr>
{% else %}<tr><td colspan="7">No services.</td></tr>{% endfor %}</table></div>
<h2>Tasks</h2>{% include "tasks" %}
<h2>Container instances</h2><div class="scroll"><table><tr><th>Instance</th><th>Status</th><th>Agent</th><th>Tasks</th><th>CPU free / total</th><th>Memory free / total (MiB)</th><th>Attributes</th><th></th></tr>
{% for i in instances %}<tr><td>{{ i.ec2InstanceId }}</td><td class="{{ i.status }}">{{ i.status }}</td>
<td class="{{ 'healthy' if i.agentConnected else 'unhealthy' }}">{{ 'connected' if i.agentConnected else 'disconnected' }}</td><td>{{ i.runningTasksCount }}</td>
<td>{{ i.cpu_free }} / {{ i.cpu_total }}</td><td>{{ i.mem_free }} / {{ i.mem_total }}</td><td>{{ i.custom_attributes }}</td>
<td>{% if i.status == "ACTIVE" %}<form class="inline" method="post" action="/console/clusters/{{ cluster }}/instances/{{ i.id }}/drain"><input type="hidden" name="csrf" value="{{ csrf }}"><button>Drain</button></form>{% endif %}</td></tr>
{% else %}<tr><td colspan="8">No container instances.</td></tr>{% endfor %}</table></div>{% endblock %}"#;

const TASKS_TABLE: &str = r#"<div class="scroll"><table><tr><th>Task</th><th>Group</th><th>Definition</th><th>Status</th><th>Desired</th><th>Health</th><th>Stop reason</th></tr>
{% for t in tasks %}<tr><td><a href="/console/clusters/{{ cluster }}/tasks/{{ t.id }}">{{ t.id[:8] }}</a></td><td>{{ t.group }}</td><td>{{ t.taskDefinitionArn | short }}</td>
<td class="{{ t.lastStatus }}">{{ t.lastStatus }}</td><td>{{ t.desiredStatus }}</td><td>{{ t.healthStatus }}</td><td>{{ t.stoppedReason }}</td></tr>
{% else %}<tr><td colspan="7">No tasks.</td></tr>{% endfor %}</table></div>"#;

const SERVICE: &str = r#"{% extends "layout.html" %}{% block title %}{{ service.serviceName }}{% endblock %}{% block body %}
<h1>Service {{ service.serviceName }}</h1>
<p><span class="{{ service.status }}">{{ service.status }}</span> · <span id="counts">{{ service.runningCount }} running, {{ service.pendingCount }} pending, {{ service.desiredCount }} desired</span> · {{ service.taskDefinition | short }}</p>
<form class="inline" method="post" action="/console/clusters/{{ cluster }}/services/{{ service.serviceName }}/scale"><input type="hidden" name="csrf" value="{{ csrf }}">
<label>Desired count <input name="desired_count" type="number" min="0" max="10000" value="{{ service.desiredCount }}" style="width:6rem"></label><button name="action" value="scale">Scale</button></form>
<form class="inline" method="post" action="/console/clusters/{{ cluster }}/services/{{ service.serviceName }}/deploy"><input type="hidden" name="csrf" value="{{ csrf }}"><button>Force new deployment</button></form>
<h2>Deployments</h2><div class="scroll"><table><tr><th>Id</th><th>Status</th><th>Task definition</th><th>Desired</th><th>Running</th><th>Pending</th><th>Rollout</th></tr>
{% for d in service.deployments %}<tr><td>{{ d.id }}</td><td>{{ d.status }}</td><td>{{ d.taskDefinition | short }}</td><td>{{ d.desiredCount }}</td><td>{{ d.runningCount }}</td><td>{{ d.pendingCount }}</td><td class="{{ d.rolloutState }}">{{ d.rolloutState }} {{ d.rolloutStateReason }}</td></tr>{% endfor %}</table></div>
{% if targets %}<h2>Load balancer targets</h2><div class="scroll"><table><tr><th>Target group</th><th>Target</th><th>Port</th><th>Health</th></tr>
{% for t in targets %}<tr><td>{{ t.group }}</td><td>{{ t.id }}</td><td>{{ t.port }}</td><td class="{{ t.state }}">{{ t.state }}</td></tr>{% endfor %}</table></div>{% endif %}
<h2>Tasks</h2>{% include "tasks" %}
<h2>Events</h2><div class="scroll"><table><tr><th>Time</th><th>Message</th></tr>
{% for e in service.events[:50] %}<tr><td>{{ e.createdAt | when }}</td><td>{{ e.message }}</td></tr>{% endfor %}</table></div>{% endblock %}"#;

const TASK: &str = r#"{% extends "layout.html" %}{% block title %}Task {{ task.id[:8] }}{% endblock %}{% block body %}
<h1>Task {{ task.id }}</h1>
<p><span class="{{ task.lastStatus }}">{{ task.lastStatus }}</span> (desired {{ task.desiredStatus }}) · {{ task.group }} · {{ task.taskDefinitionArn | short }}
{% if task.stoppedReason %}<br>Stopped: {{ task.stopCode }} {{ task.stoppedReason }}{% endif %}</p>
{% if task.desiredStatus != "STOPPED" %}<form class="inline" method="post" action="/console/clusters/{{ cluster }}/tasks/{{ task.id }}/stop"><input type="hidden" name="csrf" value="{{ csrf }}"><button>Stop task</button></form>{% endif %}
<h2>Containers</h2><div class="scroll"><table><tr><th>Name</th><th>Image</th><th>Status</th><th>Exit code</th><th>Reason</th><th>Ports</th></tr>
{% for c in task.containers %}<tr><td>{{ c.name }}</td><td>{{ c.image }}</td><td class="{{ c.lastStatus }}">{{ c.lastStatus }}</td><td>{{ c.exitCode }}</td><td>{{ c.reason }}</td>
<td>{% for b in c.networkBindings %}{{ b.hostPort }}→{{ b.containerPort }} {% endfor %}</td></tr>{% endfor %}</table></div>
<h2>Logs</h2>{% if has_logs %}<label><input type="checkbox" id="follow" checked> Follow</label>
<pre id="logs" data-src="/console/clusters/{{ cluster }}/tasks/{{ task.id }}/logs"></pre>
<script>
(function(){var pre=document.getElementById('logs'),since=0,seen={};
function poll(){if(!document.getElementById('follow').checked&&since){return setTimeout(poll,1000);}
fetch(pre.dataset.src+'?since='+since,{credentials:'same-origin'}).then(function(r){return r.json();}).then(function(d){
(d.events||[]).forEach(function(e){if(seen[e.id])return;seen[e.id]=1;pre.appendChild(document.createTextNode(e.label+' | '+e.message+'\n'));});
if(d.newest)since=d.newest;pre.scrollTop=pre.scrollHeight;}).catch(function(){}).then(function(){setTimeout(poll,1000);});}
poll();})();
</script>{% else %}<p>No container of this task uses the awslogs log driver.</p>{% endif %}{% endblock %}"#;

const REPOSITORIES: &str = r#"{% extends "layout.html" %}{% block title %}Repositories{% endblock %}{% block body %}
<h1>Repositories</h1>{% for r in repositories %}<h2>{{ r.repositoryName }}</h2><p>{{ r.repositoryUri }}</p>
<div class="scroll"><table><tr><th>Tags</th><th>Digest</th><th>Size (bytes)</th><th>Pushed</th></tr>
{% for i in r.images %}<tr><td>{{ i.imageTags | join(", ") if i.imageTags else "(untagged)" }}</td><td>{{ i.imageDigest[:19] }}</td><td>{{ i.imageSizeInBytes }}</td><td>{{ i.imagePushedAt | when }}</td></tr>
{% else %}<tr><td colspan="4">No images.</td></tr>{% endfor %}</table></div>{% else %}<p>No repositories.</p>{% endfor %}{% endblock %}"#;

const LOAD_BALANCERS: &str = r#"{% extends "layout.html" %}{% block title %}Load balancers{% endblock %}{% block body %}
<h1>Load balancers</h1><div class="scroll"><table><tr><th>Name</th><th>Type</th><th>State</th><th>DNS name</th></tr>
{% for l in load_balancers %}<tr><td>{{ l.name }}</td><td>{{ l.type }}</td><td class="{{ l.state }}">{{ l.state }}</td><td>{{ l.dns }}</td></tr>
{% else %}<tr><td colspan="4">No load balancers.</td></tr>{% endfor %}</table></div>
<h2>Target groups</h2>{% for g in target_groups %}<h3>{{ g.name }} ({{ g.protocol }}:{{ g.port }})</h3>
<div class="scroll"><table><tr><th>Target</th><th>Port</th><th>Health</th><th>Reason</th></tr>
{% for t in g.targets %}<tr><td>{{ t.id }}</td><td>{{ t.port }}</td><td class="{{ t.state }}">{{ t.state }}</td><td>{{ t.reason }}</td></tr>
{% else %}<tr><td colspan="4">No targets.</td></tr>{% endfor %}</table></div>{% else %}<p>No target groups.</p>{% endfor %}{% endblock %}"#;

const LOG_GROUPS: &str = r#"{% extends "layout.html" %}{% block title %}Log groups{% endblock %}{% block body %}
<h1>Log groups</h1><div class="scroll"><table><tr><th>Name</th><th>Stored bytes</th><th>Retention (days)</th></tr>
{% for g in groups %}<tr><td><a href="/console/log-groups?group={{ g.logGroupName | urlencode }}">{{ g.logGroupName }}</a></td><td>{{ g.storedBytes }}</td><td>{{ g.retentionInDays }}</td></tr>
{% else %}<tr><td colspan="3">No log groups.</td></tr>{% endfor %}</table></div>
{% if group %}<h2>Search {{ group }}</h2><form method="get" action="/console/log-groups"><input type="hidden" name="group" value="{{ group }}">
<input name="q" value="{{ q }}" placeholder="filter pattern"> <button>Search</button></form>
<pre id="search">{% for e in events %}{{ e.timestamp | when }} {{ e.logStreamName }} | {{ e.message }}
{% endfor %}</pre>{% endif %}{% endblock %}"#;

pub const TASKS_PARTIAL: (&str, &str) = ("tasks", TASKS_TABLE);
