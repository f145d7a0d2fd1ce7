//! Workflows, as Celery's canvas: signatures, `chain`, `group`, `chord`, nestable.
//!
//! A [`Canvas`] turns into the JSON description the SQL API takes (`celeriac.apply(jsonb)`),
//! which does all the work in the database: ids are given up front (so the final result's id is
//! known at once), and each step runs in the transaction that finishes the one before it.
//!
//! ```no_run
//! # async fn f(client: celeriac::Client) -> celeriac::Result<()> {
//! use celeriac::canvas::{chain, chord, group};
//! use celeriac::NewTask;
//! use serde_json::json;
//! let flow = chain([
//!     NewTask::new("fetch").args(json!(["https://example.com"])).into(),
//!     group([NewTask::new("parse").into(), NewTask::new("index").into()]),
//!     chord([NewTask::new("a").into(), NewTask::new("b").into()], NewTask::new("merge").into()),
//! ]);
//! let applied = client.apply(&flow).await?;
//! let merged = client.result(applied.id).get(std::time::Duration::from_secs(60)).await?;
//! # Ok(()) }
//! ```

use serde_json::{Map, Value, json};

use crate::task::{Expires, NewTask, TaskId};

/// One task of a workflow: a [`NewTask`] plus how it takes its input and what it triggers.
#[derive(Debug, Clone, PartialEq)]
pub struct Signature {
    /// The task and its options.
    pub task: NewTask,
    /// Do not prepend the previous step's result to the args.
    pub immutable: bool,
    /// Run these with this task's result when it succeeds.
    pub link: Vec<Canvas>,
    /// Run these with this task's id when it fails.
    pub link_error: Vec<Canvas>,
}

/// A workflow node.
#[derive(Debug, Clone, PartialEq)]
pub enum Node {
    /// One task.
    Task(Box<Signature>),
    /// Each result is prepended to the next node's args.
    Chain(Vec<Canvas>),
    /// Run together; the result is the list of results, in order.
    Group(Vec<Canvas>),
    /// A group, then `body` with the list of results, exactly once.
    Chord(Vec<Canvas>, Box<Canvas>),
}

/// A workflow: a node plus error callbacks that apply to every task in it.
#[derive(Debug, Clone, PartialEq)]
pub struct Canvas {
    /// The node.
    pub node: Node,
    /// Run with a failed task's id when any task of this node fails.
    pub link_error: Vec<Canvas>,
}

/// Run `nodes` one after the other, each getting the previous result as its first argument.
pub fn chain(nodes: impl IntoIterator<Item = Canvas>) -> Canvas {
    Canvas::from(Node::Chain(nodes.into_iter().collect()))
}

/// Run `nodes` together; the result is their results, in order.
pub fn group(nodes: impl IntoIterator<Item = Canvas>) -> Canvas {
    Canvas::from(Node::Group(nodes.into_iter().collect()))
}

/// Run `header` together, then `body` once with the list of their results.
pub fn chord(header: impl IntoIterator<Item = Canvas>, body: Canvas) -> Canvas {
    Canvas::from(Node::Chord(header.into_iter().collect(), Box::new(body)))
}

impl From<Node> for Canvas {
    fn from(node: Node) -> Self {
        Canvas {
            node,
            link_error: vec![],
        }
    }
}

impl From<NewTask> for Canvas {
    fn from(task: NewTask) -> Self {
        Signature::from(task).into()
    }
}

impl From<Signature> for Canvas {
    fn from(sig: Signature) -> Self {
        Canvas::from(Node::Task(Box::new(sig)))
    }
}

impl From<NewTask> for Signature {
    fn from(task: NewTask) -> Self {
        Signature {
            task,
            immutable: false,
            link: vec![],
            link_error: vec![],
        }
    }
}

impl Signature {
    /// Ignore the previous step's result.
    pub fn immutable(mut self) -> Self {
        self.immutable = true;
        self
    }

    /// Also run `callback` with this task's result when it succeeds.
    pub fn link(mut self, callback: impl Into<Canvas>) -> Self {
        self.link.push(callback.into());
        self
    }

    /// Run `errback` with this task's id when it fails.
    pub fn on_error(mut self, errback: impl Into<Canvas>) -> Self {
        self.link_error.push(errback.into());
        self
    }
}

impl Canvas {
    /// Run `errback` with the failed task's id when any task of this workflow fails.
    pub fn on_error(mut self, errback: impl Into<Canvas>) -> Self {
        self.link_error.push(errback.into());
        self
    }

    /// The JSON description `celeriac.apply` takes. Tasks without a queue go to
    /// `default_queue`.
    pub fn to_json(&self, default_queue: &str) -> Value {
        let all = |nodes: &[Canvas]| -> Value {
            Value::Array(nodes.iter().map(|c| c.to_json(default_queue)).collect())
        };
        let mut out = match &self.node {
            Node::Task(sig) => signature_json(sig, default_queue),
            Node::Chain(nodes) => json!({ "chain": all(nodes) }),
            Node::Group(nodes) => json!({ "group": all(nodes) }),
            Node::Chord(header, body) => {
                json!({ "chord": { "header": all(header), "body": body.to_json(default_queue) } })
            }
        };
        if !self.link_error.is_empty()
            && let Value::Object(m) = &mut out
        {
            let mut eb = match m.remove("link_error") {
                Some(Value::Array(v)) => v,
                _ => vec![],
            };
            eb.extend(self.link_error.iter().map(|c| c.to_json(default_queue)));
            m.insert("link_error".into(), Value::Array(eb));
        }
        out
    }
}

fn signature_json(sig: &Signature, default_queue: &str) -> Value {
    let t = &sig.task;
    let mut o = Map::new();
    o.insert(
        "queue".into(),
        json!(t.queue.as_deref().unwrap_or(default_queue)),
    );
    o.insert("priority".into(), json!(t.priority));
    let mut put = |k: &str, v: Value| {
        if !v.is_null() {
            o.insert(k.into(), v);
        }
    };
    put("countdown", json!(t.countdown));
    put("eta", json!(t.eta));
    match t.expires {
        Some(Expires::At(at)) => put("expires", json!(at)),
        Some(Expires::In(s)) => put("expires_in", json!(s)),
        None => {}
    }
    put("max_retries", json!(t.max_retries));
    put("retry_delay", json!(t.retry_delay));
    put("retry_backoff", json!(t.retry_backoff));
    put("retry_backoff_max", json!(t.retry_backoff_max));
    put("retry_jitter", json!(t.retry_jitter));
    put("soft_time_limit", json!(t.soft_time_limit));
    put("time_limit", json!(t.time_limit));
    if t.ignore_result {
        put("ignore_result", json!(true));
    }
    if t.headers.as_object().is_some_and(|h| !h.is_empty()) {
        put("headers", t.headers.clone());
    }
    let mut m = Map::new();
    m.insert("task".into(), json!(t.name));
    m.insert("args".into(), t.args.clone());
    m.insert("kwargs".into(), t.kwargs.clone());
    m.insert("options".into(), Value::Object(o));
    if let Some(id) = t.id {
        m.insert("id".into(), json!(id));
    }
    if sig.immutable {
        m.insert("immutable".into(), json!(true));
    }
    if !sig.link.is_empty() {
        m.insert(
            "link".into(),
            Value::Array(sig.link.iter().map(|c| c.to_json(default_queue)).collect()),
        );
    }
    if !sig.link_error.is_empty() {
        m.insert(
            "link_error".into(),
            Value::Array(
                sig.link_error
                    .iter()
                    .map(|c| c.to_json(default_queue))
                    .collect(),
            ),
        );
    }
    Value::Object(m)
}

/// What applying a canvas returns.
#[derive(Debug, Clone, PartialEq)]
pub struct Applied {
    /// The id whose result is the workflow's result: a task id (chain, chord, single task) or
    /// a group id (a group: see `Client::group`).
    pub id: TaskId,
    /// The first task's id.
    pub root_id: TaskId,
    /// The workflow as stored, every task and group with its id.
    pub canvas: Value,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canvas_json_shapes() {
        let c = chain([
            NewTask::new("a").args(json!([1])).queue("q").into(),
            Signature::from(NewTask::new("b")).immutable().into(),
            chord(
                [NewTask::new("c").into()],
                NewTask::new("d").countdown(5.0).into(),
            ),
        ])
        .on_error(NewTask::new("oops"));
        let v = c.to_json("celery");
        assert_eq!(v["chain"][0]["task"], "a");
        assert_eq!(v["chain"][0]["options"]["queue"], "q");
        assert_eq!(v["chain"][1]["immutable"], true);
        assert_eq!(v["chain"][1]["options"]["queue"], "celery");
        assert_eq!(v["chain"][2]["chord"]["header"][0]["task"], "c");
        assert_eq!(v["chain"][2]["chord"]["body"]["options"]["countdown"], 5.0);
        assert_eq!(v["link_error"][0]["task"], "oops");
    }
}
