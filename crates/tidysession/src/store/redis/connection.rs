//! [`Connection`]: the store's own connection to a single Redis server over plain TCP.
//!
//! Every request of the process shares one TCP connection, owned by a task. Requests reach
//! the task through a channel; it writes their commands in the order they arrive, all that
//! are waiting in one write, and hands each reply to the request whose command it answers
//! (Redis answers in order) through a oneshot.
//!
//! Replies are read by a parser for RESP2, the protocol of a connection that never sent
//! `HELLO 3`. It builds the same [`Value`]s as the `redis` crate, at a fraction of the cost
//! of that crate's general parser, which showed as the largest single cost of loading a
//! session. A reply holding an error is handed to that crate's parser instead, so error
//! kinds (`NOSCRIPT`, `WRONGTYPE`, ...) come out exactly as the crate makes them.
//!
//! A request that finds the connection gone opens a new one (one attempt, bounded by the
//! connect timeout) before sending anything, so only requests whose commands were already on
//! the wire fail when the connection drops. While the server is unreachable each request
//! fails as soon as its connect attempt does. A request whose reply takes longer than the
//! response timeout fails; its reply, when it comes, is dropped.

use std::collections::VecDeque;
use std::io;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use ::redis::{ConnectionAddr, ConnectionInfo, ErrorKind, ProtocolVersion, RedisError, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};

/// How long a request waits for its reply before it fails, on every kind of connection.
pub(super) const RESPONSE_TIMEOUT: Duration = Duration::from_secs(2);

/// How much the socket task reads at a time, at least.
const READ_CHUNK: usize = 16 * 1024;

/// The deepest nesting of arrays a reply may have (the store's replies nest two deep).
const MAX_DEPTH: usize = 8;

type Reply = oneshot::Sender<Result<Vec<Value>, RedisError>>;

/// A pipelined, reconnecting connection to one Redis server. Cheap to clone: clones share
/// the connection.
#[derive(Clone)]
pub(super) struct Connection {
    shared: Arc<Shared>,
}

struct Shared {
    host: String,
    port: u16,
    db: i64,
    /// `AUTH`, `SELECT` and `PING`, packed, sent first on every new socket; and how many
    /// replies.
    handshake: (Vec<u8>, usize),
    connect_timeout: Duration,
    /// The socket task's channel, while it runs.
    current: Mutex<Option<mpsc::UnboundedSender<Request>>>,
    /// Held while opening a socket, so concurrent requests open one, not one each.
    connecting: tokio::sync::Mutex<()>,
}

/// Commands for the socket task: their packed bytes, how many replies to skip and how many
/// to return, and where the replies go.
struct Request {
    bytes: Vec<u8>,
    skip: usize,
    count: usize,
    reply: Reply,
}

/// A request on the wire: how many of its replies are still to skip and to collect.
struct Waiting {
    skip: usize,
    count: usize,
    replies: Vec<Value>,
    reply: Reply,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Nothing panics while holding this lock; if something did, the state is still whole.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Connection {
    /// Whether `info` is something this connection speaks: plain TCP and RESP2. TLS, Unix
    /// sockets and RESP3 go through the `redis` crate's own connection.
    pub(super) fn supports(info: &ConnectionInfo) -> bool {
        matches!(info.addr(), ConnectionAddr::Tcp(..))
            && info.redis_settings().protocol() == ProtocolVersion::RESP2
    }

    /// Opens the connection (see [`supports`](Self::supports)), authenticating and selecting
    /// the database as `info` says.
    pub(super) async fn open(
        info: &ConnectionInfo,
        connect_timeout: Duration,
    ) -> Result<Self, RedisError> {
        let ConnectionAddr::Tcp(host, port) = info.addr() else {
            return Err(RedisError::from((
                ErrorKind::InvalidClientConfig,
                "only plain TCP connections",
            )));
        };
        let settings = info.redis_settings();
        // The handshake ends with a PING, so a socket counts as open only once Redis answered
        // on it (something that accepts connections and closes them is no Redis).
        let mut handshake = (Vec::new(), 1);
        if let Some(password) = settings.password() {
            let mut auth = ::redis::cmd("AUTH");
            if let Some(user) = settings.username() {
                auth.arg(user);
            }
            auth.arg(password).write_packed_command(&mut handshake.0);
            handshake.1 += 1;
        }
        if settings.db() != 0 {
            ::redis::cmd("SELECT")
                .arg(settings.db())
                .write_packed_command(&mut handshake.0);
            handshake.1 += 1;
        }
        ::redis::cmd("PING").write_packed_command(&mut handshake.0);
        let conn = Connection {
            shared: Arc::new(Shared {
                host: host.clone(),
                port: *port,
                db: settings.db(),
                handshake,
                connect_timeout,
                current: Mutex::new(None),
                connecting: tokio::sync::Mutex::new(()),
            }),
        };
        conn.socket().await?;
        Ok(conn)
    }

    /// The database this connection selected.
    pub(super) fn db(&self) -> i64 {
        self.shared.db
    }

    /// Sends packed commands and returns the replies after the first `skip`, `count` of them.
    pub(super) async fn send(
        &self,
        bytes: Vec<u8>,
        skip: usize,
        count: usize,
    ) -> Result<Vec<Value>, RedisError> {
        let (tx, rx) = oneshot::channel();
        let mut request = Request {
            bytes,
            skip,
            count,
            reply: tx,
        };
        // A socket task that has ended took nothing from its channel: the request goes to a
        // new socket, once.
        let mut attempts = 0;
        loop {
            let socket = match self.current() {
                Some(socket) if attempts == 0 => socket,
                _ => self.socket().await?,
            };
            attempts += 1;
            match socket.send(request) {
                Ok(()) => break,
                Err(_) if attempts == 2 => return Err(closed()),
                Err(mpsc::error::SendError(back)) => {
                    self.forget(&socket);
                    request = back;
                }
            }
        }
        match tokio::time::timeout(RESPONSE_TIMEOUT, rx).await {
            Ok(Ok(replies)) => replies,
            Ok(Err(_)) => Err(closed()),
            Err(_) => Err(RedisError::from(io::Error::new(
                io::ErrorKind::TimedOut,
                "Redis did not reply in time",
            ))),
        }
    }

    fn current(&self) -> Option<mpsc::UnboundedSender<Request>> {
        let current = lock(&self.shared.current);
        current.as_ref().filter(|s| !s.is_closed()).cloned()
    }

    /// Drops `socket` as the current one, unless another already replaced it.
    fn forget(&self, socket: &mpsc::UnboundedSender<Request>) {
        let mut current = lock(&self.shared.current);
        if current.as_ref().is_some_and(|c| c.same_channel(socket)) {
            *current = None;
        }
    }

    /// The current socket task, or a new one.
    async fn socket(&self) -> Result<mpsc::UnboundedSender<Request>, RedisError> {
        let _one = self.shared.connecting.lock().await;
        if let Some(socket) = self.current() {
            return Ok(socket);
        }
        let s = &self.shared;
        let stream = tokio::time::timeout(
            s.connect_timeout,
            open_socket(&s.host, s.port, &s.handshake.0, s.handshake.1),
        )
        .await
        .map_err(|_| {
            RedisError::from(io::Error::new(
                io::ErrorKind::TimedOut,
                "connecting to Redis timed out",
            ))
        })??;
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(run(stream, rx));
        *lock(&s.current) = Some(tx.clone());
        Ok(tx)
    }
}

/// Connects and runs the handshake.
async fn open_socket(
    host: &str,
    port: u16,
    handshake: &[u8],
    replies: usize,
) -> Result<TcpStream, RedisError> {
    let mut stream = TcpStream::connect((host, port)).await?;
    stream.set_nodelay(true)?;
    stream.write_all(handshake).await?;
    let mut buf = Vec::with_capacity(256);
    let mut got = 0;
    while got < replies {
        if stream.read_buf(&mut buf).await? == 0 {
            return Err(closed());
        }
        for reply in complete_replies(&mut buf)? {
            reply.extract_error()?;
            got += 1;
        }
    }
    Ok(stream)
}

/// The socket task: writes what requests send, hands out replies in order, and ends when
/// the socket fails, or when every handle is gone and no reply is still due. Whatever is
/// waiting when the socket fails gets the error.
async fn run(stream: TcpStream, mut requests: mpsc::UnboundedReceiver<Request>) {
    let (mut rd, mut wr) = stream.into_split();
    let mut waiting: VecDeque<Waiting> = VecDeque::new();
    let mut out: Vec<u8> = Vec::new();
    let mut buf: Vec<u8> = Vec::with_capacity(READ_CHUNK);
    let mut open = true;
    let failure = loop {
        if !open && waiting.is_empty() {
            return;
        }
        tokio::select! {
            request = requests.recv(), if open => {
                let Some(first) = request else {
                    open = false;
                    continue;
                };
                // Let the tasks that are ready to run first: those about to send commands add
                // them to this write, one write (and one read by Redis) for many.
                tokio::task::yield_now().await;
                let mut next = Some(first);
                while let Some(r) = next {
                    out.extend_from_slice(&r.bytes);
                    waiting.push_back(Waiting {
                        skip: r.skip,
                        count: r.count,
                        replies: Vec::with_capacity(r.count),
                        reply: r.reply,
                    });
                    next = requests.try_recv().ok();
                }
                if let Err(e) = wr.write_all(&out).await {
                    break RedisError::from(e);
                }
                out.clear();
            }
            read = rd.read_buf(&mut buf) => {
                match read {
                    Ok(0) => break closed(),
                    Err(e) => break RedisError::from(e),
                    Ok(_) => {}
                }
                let handed = complete_replies(&mut buf)
                    .and_then(|replies| hand_out(&mut waiting, replies));
                if let Err(e) = handed {
                    break e;
                }
                if buf.capacity() - buf.len() < READ_CHUNK / 4 {
                    buf.reserve(READ_CHUNK);
                }
            }
        }
    };
    requests.close();
    let message = failure.to_string();
    for w in waiting {
        let _ = w.reply.send(Err(RedisError::from(io::Error::new(
            io::ErrorKind::ConnectionReset,
            message.clone(),
        ))));
    }
}

/// Takes the complete replies from the start of `buf`, leaving an incomplete rest.
fn complete_replies(buf: &mut Vec<u8>) -> Result<Vec<Value>, RedisError> {
    let mut replies = Vec::new();
    let mut start = 0;
    while let Some((reply, used)) = parse(&buf[start..])? {
        start += used;
        replies.push(reply);
    }
    buf.drain(..start);
    Ok(replies)
}

/// Gives each reply to the request it answers, in order.
fn hand_out(waiting: &mut VecDeque<Waiting>, replies: Vec<Value>) -> Result<(), RedisError> {
    for reply in replies {
        let Some(w) = waiting.front_mut() else {
            return Err(RedisError::from((
                ErrorKind::Parse,
                "a reply nobody asked for",
            )));
        };
        if w.skip > 0 {
            w.skip -= 1;
        } else {
            w.replies.push(reply);
        }
        if w.skip == 0 && w.replies.len() == w.count {
            if let Some(w) = waiting.pop_front() {
                // The requester may have given up (timeout, cancelled): nothing to do.
                let _ = w.reply.send(Ok(w.replies));
            }
        }
    }
    Ok(())
}

fn closed() -> RedisError {
    RedisError::from(io::Error::new(
        io::ErrorKind::ConnectionReset,
        "the connection to Redis closed",
    ))
}

/// Parses one reply from the start of `buf`: the value and the bytes it took, or `None`
/// while it is incomplete.
fn parse(buf: &[u8]) -> Result<Option<(Value, usize)>, RedisError> {
    let mut at = 0;
    let mut has_error = false;
    let Some(value) = value(buf, &mut at, &mut has_error, 0)? else {
        return Ok(None);
    };
    if has_error {
        // Error replies are rare: the crate's own parser makes its error kinds.
        return Ok(Some((::redis::parse_redis_value(&buf[..at])?, at)));
    }
    Ok(Some((value, at)))
}

fn malformed(what: &'static str) -> RedisError {
    RedisError::from((ErrorKind::Parse, what))
}

/// The line at `*at` without its CRLF, moving `*at` past it; `None` while incomplete.
fn line<'b>(buf: &'b [u8], at: &mut usize) -> Option<&'b [u8]> {
    let rest = &buf[*at..];
    let end = rest.windows(2).position(|w| w == b"\r\n")?;
    *at += end + 2;
    Some(&rest[..end])
}

fn integer(digits: &[u8]) -> Result<i64, RedisError> {
    super::reply::parse_i64(digits).ok_or_else(|| malformed("bad integer in reply"))
}

/// A length: -1 (nil) or a count that fits in memory.
fn length(digits: &[u8]) -> Result<Option<usize>, RedisError> {
    match integer(digits)? {
        -1 => Ok(None),
        n => usize::try_from(n)
            .map(Some)
            .map_err(|_| malformed("bad length in reply")),
    }
}

fn value(
    buf: &[u8],
    at: &mut usize,
    has_error: &mut bool,
    depth: usize,
) -> Result<Option<Value>, RedisError> {
    let Some(&kind) = buf.get(*at) else {
        return Ok(None);
    };
    let mut next = *at + 1;
    let Some(head) = line(buf, &mut next) else {
        return Ok(None);
    };
    let value = match kind {
        b'+' if head == b"OK" => Value::Okay,
        b'+' => Value::SimpleString(
            String::from_utf8(head.to_vec()).map_err(|_| malformed("status is not UTF-8"))?,
        ),
        b'-' => {
            *has_error = true;
            Value::Nil
        }
        b':' => Value::Int(integer(head)?),
        b'$' => match length(head)? {
            None => Value::Nil,
            Some(len) => {
                let end = next
                    .checked_add(len)
                    .ok_or_else(|| malformed("bad length in reply"))?;
                if buf.len() < end + 2 {
                    return Ok(None);
                }
                if &buf[end..end + 2] != b"\r\n" {
                    return Err(malformed("bulk string without CRLF"));
                }
                let bytes = buf[next..end].to_vec();
                next = end + 2;
                Value::BulkString(bytes)
            }
        },
        b'*' => match length(head)? {
            None => Value::Nil,
            Some(len) => {
                if depth >= MAX_DEPTH {
                    return Err(malformed("reply nested too deep"));
                }
                // Each element takes at least 3 bytes: no allocation beyond what arrived.
                let mut items = Vec::with_capacity(len.min((buf.len() - next) / 3));
                for _ in 0..len {
                    match value(buf, &mut next, has_error, depth + 1)? {
                        Some(item) => items.push(item),
                        None => return Ok(None),
                    }
                }
                Value::Array(items)
            }
        },
        _ => return Err(malformed("unknown reply type (not RESP2)")),
    };
    *at = next;
    Ok(Some(value))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(input: &[u8]) -> Value {
        let (v, used) = parse(input).unwrap().expect("complete");
        assert_eq!(used, input.len());
        v
    }

    #[test]
    fn parses_what_the_store_receives() {
        assert_eq!(one(b"+OK\r\n"), Value::Okay);
        assert_eq!(
            one(b"+QUEUED\r\n"),
            Value::SimpleString("QUEUED".to_owned())
        );
        assert_eq!(one(b":-42\r\n"), Value::Int(-42));
        assert_eq!(one(b"$-1\r\n"), Value::Nil);
        assert_eq!(one(b"*-1\r\n"), Value::Nil);
        assert_eq!(one(b"$0\r\n\r\n"), Value::BulkString(Vec::new()));
        assert_eq!(
            one(b"$4\r\na\r\nb\r\n"),
            Value::BulkString(b"a\r\nb".to_vec()),
            "a bulk string is read by its length, CRLF inside included"
        );
        assert_eq!(
            one(b"*3\r\n$1\r\na\r\n*2\r\n:1\r\n$-1\r\n*0\r\n"),
            Value::Array(vec![
                Value::BulkString(b"a".to_vec()),
                Value::Array(vec![Value::Int(1), Value::Nil]),
                Value::Array(Vec::new()),
            ])
        );
    }

    #[test]
    fn agrees_with_the_crates_parser() {
        let replies: [&[u8]; 6] = [
            b"*4\r\n$9\r\nm:created\r\n$13\r\n1700000000000\r\n$5\r\nd:pad\r\n$3\r\n\"x\"\r\n",
            b"*2\r\n$1\r\n0\r\n*2\r\n$2\r\nk1\r\n$2\r\nk2\r\n",
            b":9223372036854775807\r\n",
            b":-9223372036854775807\r\n",
            b"*1\r\n*1\r\n*1\r\n$0\r\n\r\n",
            b"+PONG\r\n",
        ];
        for reply in replies {
            assert_eq!(one(reply), ::redis::parse_redis_value(reply).unwrap());
        }
    }

    #[test]
    fn error_replies_keep_their_kind() {
        let err = one(b"-NOSCRIPT No matching script.\r\n")
            .extract_error()
            .unwrap_err();
        assert_eq!(
            err.kind(),
            ErrorKind::Server(::redis::ServerErrorKind::NoScript)
        );
        // An error inside an array (a script's error table, say) is kept in place.
        let v = one(b"*2\r\n:1\r\n-WRONGTYPE Operation against a key\r\n");
        assert!(matches!(&v, Value::Array(items) if matches!(items[1], Value::ServerError(_))));
        assert!(v.extract_error().is_err());
    }

    #[test]
    fn incomplete_replies_wait_for_more() {
        let full: &[u8] = b"*2\r\n$5\r\nhello\r\n:7\r\n";
        for cut in 0..full.len() {
            assert!(parse(&full[..cut]).unwrap().is_none(), "cut at {cut}");
        }
        // Two replies back to back: the first is taken alone.
        let (v, used) = parse(b":1\r\n:2\r\n").unwrap().unwrap();
        assert_eq!((v, used), (Value::Int(1), 4));
    }

    #[test]
    fn malformed_replies_are_errors_not_panics() {
        for bad in [
            &b"?x\r\n"[..],
            b":12a\r\n",
            b":99999999999999999999\r\n",
            b"$-2\r\n",
            b"$3\r\nabcd\r\n",
            b"%1\r\n",
            b"*99999999999999999999\r\n",
        ] {
            assert!(parse(bad).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
        let deep = "*1\r\n".repeat(MAX_DEPTH + 1) + ":1\r\n";
        assert!(parse(deep.as_bytes()).is_err());
    }

    #[test]
    fn replies_go_to_their_requests_in_order_across_reads() {
        let mut waiting = VecDeque::new();
        let mut rxs = Vec::new();
        for (skip, count) in [(0, 1), (1, 2), (0, 1)] {
            let (tx, rx) = oneshot::channel();
            waiting.push_back(Waiting {
                skip,
                count,
                replies: Vec::new(),
                reply: tx,
            });
            rxs.push(rx);
        }
        let stream: &[u8] = b":1\r\n+OK\r\n:2\r\n:3\r\n$1\r\nz\r\n";
        let mut buf = Vec::new();
        // Fed a few bytes at a time, as reads may split it anywhere.
        for chunk in stream.chunks(3) {
            buf.extend_from_slice(chunk);
            let replies = complete_replies(&mut buf).unwrap();
            hand_out(&mut waiting, replies).unwrap();
        }
        assert!(buf.is_empty() && waiting.is_empty());
        let got: Vec<Vec<Value>> = rxs
            .into_iter()
            .map(|mut rx| rx.try_recv().unwrap().unwrap())
            .collect();
        assert_eq!(
            got,
            vec![
                vec![Value::Int(1)],
                vec![Value::Int(2), Value::Int(3)],
                vec![Value::BulkString(b"z".to_vec())],
            ]
        );
        // A reply with nobody waiting for it means the stream is out of step.
        assert!(hand_out(&mut waiting, vec![Value::Int(9)]).is_err());
    }
}
