//! The system calls of the plain loop, each behind a safe function: epoll, the loop's bell
//! (an eventfd that other threads ring), accepting, dialing, and moving bytes.

use std::io;
use std::mem::MaybeUninit;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::Arc;

fn check(result: libc::c_int) -> io::Result<libc::c_int> {
    if result < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(result)
    }
}

fn check_size(result: isize) -> io::Result<usize> {
    if result < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(result as usize)
    }
}

/// What a connected socket is registered for, once, for its whole life: both ways, the peer's
/// FIN reported apart from data (so a short read that follows it is known to be the last), and
/// edge-triggered, so that nothing needs to be changed while the pair lives.
pub(super) const EDGE: u32 =
    (libc::EPOLLIN | libc::EPOLLOUT | libc::EPOLLRDHUP | libc::EPOLLET) as u32;

/// What a listener is registered for: level-triggered, so it can be accepted from once per
/// wake-up and still report the clients left in its backlog.
pub(super) const LEVEL_IN: u32 = libc::EPOLLIN as u32;

/// An epoll instance.
pub(super) struct Epoll(OwnedFd);

impl Epoll {
    pub(super) fn new() -> io::Result<Epoll> {
        // SAFETY: no pointers; a new descriptor is returned or an error.
        let fd = check(unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) })?;
        // SAFETY: epoll_create1 succeeded; the descriptor is owned here only.
        Ok(Epoll(unsafe { OwnedFd::from_raw_fd(fd) }))
    }

    fn control(&self, op: libc::c_int, fd: RawFd, events: u32, token: u64) -> io::Result<()> {
        let mut event = libc::epoll_event { events, u64: token };
        // SAFETY: `event` is valid for the call; the kernel copies it.
        check(unsafe { libc::epoll_ctl(self.0.as_raw_fd(), op, fd, &mut event) }).map(drop)
    }

    pub(super) fn add(&self, fd: RawFd, events: u32, token: u64) -> io::Result<()> {
        self.control(libc::EPOLL_CTL_ADD, fd, events, token)
    }

    pub(super) fn modify(&self, fd: RawFd, events: u32, token: u64) -> io::Result<()> {
        self.control(libc::EPOLL_CTL_MOD, fd, events, token)
    }

    /// Waits up to `timeout_ms` (-1: no limit) for events; an interruption is no event.
    pub(super) fn wait(
        &self,
        events: &mut [libc::epoll_event],
        timeout_ms: libc::c_int,
    ) -> io::Result<usize> {
        // SAFETY: `events` is valid for writes of its length, which is what is passed.
        let n = unsafe {
            libc::epoll_wait(
                self.0.as_raw_fd(),
                events.as_mut_ptr(),
                events.len().min(libc::c_int::MAX as usize) as libc::c_int,
                timeout_ms,
            )
        };
        match check(n) {
            Ok(n) => Ok(n as usize),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(0),
            Err(e) => Err(e),
        }
    }
}

/// An eventfd that wakes the loop from another thread: the waker of the futures the loop
/// polls (the stop's signals, a connection slot being waited for).
pub(super) struct Bell(OwnedFd);

impl Bell {
    pub(super) fn new() -> io::Result<Bell> {
        // SAFETY: no pointers; a new descriptor is returned or an error.
        let fd = check(unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) })?;
        // SAFETY: eventfd succeeded; the descriptor is owned here only.
        Ok(Bell(unsafe { OwnedFd::from_raw_fd(fd) }))
    }

    pub(super) fn fd(&self) -> RawFd {
        self.0.as_raw_fd()
    }

    fn ring(&self) {
        let one = 1u64.to_ne_bytes();
        // SAFETY: writes 8 bytes from a valid buffer. A full counter (never, in practice)
        // already means "rung".
        unsafe { libc::write(self.0.as_raw_fd(), one.as_ptr().cast(), one.len()) };
    }

    /// Takes the rings so far: the bell is level-triggered and would report them again.
    pub(super) fn clear(&self) {
        let mut count = [0u8; 8];
        // SAFETY: reads 8 bytes into a valid buffer; "would block" means nothing rang.
        unsafe { libc::read(self.0.as_raw_fd(), count.as_mut_ptr().cast(), count.len()) };
    }
}

impl std::task::Wake for Bell {
    fn wake(self: Arc<Self>) {
        self.ring();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.ring();
    }
}

/// Accepts one client, non-blocking and close-on-exec in the same call.
pub(super) fn accept(listener: RawFd) -> io::Result<(OwnedFd, Option<SocketAddr>)> {
    // SAFETY: all-zero is a valid sockaddr_storage.
    let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    // SAFETY: `storage` and `len` are valid for the kernel to fill.
    let fd = check(unsafe {
        libc::accept4(
            listener,
            (&raw mut storage).cast(),
            &mut len,
            libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
        )
    })?;
    // SAFETY: accept4 succeeded; the descriptor is owned here only.
    let client = unsafe { OwnedFd::from_raw_fd(fd) };
    Ok((client, socket_addr(&storage)))
}

/// The address in a `sockaddr_storage` the kernel filled, if it is IPv4 or IPv6.
fn socket_addr(storage: &libc::sockaddr_storage) -> Option<SocketAddr> {
    match libc::c_int::from(storage.ss_family) {
        libc::AF_INET => {
            // SAFETY: the family says the storage holds a sockaddr_in, which it is big enough for.
            let v4 =
                unsafe { &*(storage as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
            Some(SocketAddr::V4(SocketAddrV4::new(
                Ipv4Addr::from(u32::from_be(v4.sin_addr.s_addr)),
                u16::from_be(v4.sin_port),
            )))
        }
        libc::AF_INET6 => {
            // SAFETY: as above, for sockaddr_in6.
            let v6 = unsafe {
                &*(storage as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>()
            };
            Some(SocketAddr::V6(SocketAddrV6::new(
                Ipv6Addr::from(v6.sin6_addr.s6_addr),
                u16::from_be(v6.sin6_port),
                v6.sin6_flowinfo,
                v6.sin6_scope_id,
            )))
        }
        _ => None,
    }
}

/// Why a connect failed, from the socket's pending error.
pub(super) fn connect_error(socket: &OwnedFd) -> io::Error {
    match socket2::SockRef::from(socket).take_error() {
        Ok(Some(e)) | Err(e) => e,
        Ok(None) => io::ErrorKind::ConnectionRefused.into(),
    }
}

/// `read(2)` into memory that need not be initialized.
pub(super) fn read(fd: RawFd, buf: &mut [MaybeUninit<u8>]) -> io::Result<usize> {
    // SAFETY: `buf` is valid for writes of its length, and read(2) only writes.
    check_size(unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) })
}

/// `send(2)` without SIGPIPE: a peer that has gone is an error to report, not a signal.
///
/// `fin_follows` says that the caller shuts the socket down (or closes it) right after this
/// send, whatever it takes: the data is then held back (`MSG_MORE`) for the FIN to leave in
/// the same segment. The peer then wakes once for both, not once for the data and again for
/// the EOF, and a packet and its acknowledgement are spared, on a path that every
/// request-reply connection takes (the server replies and closes).
pub(super) fn send(fd: RawFd, data: &[u8], fin_follows: bool) -> io::Result<usize> {
    let flags = if fin_follows {
        libc::MSG_NOSIGNAL | libc::MSG_MORE
    } else {
        libc::MSG_NOSIGNAL
    };
    // SAFETY: `data` is valid for reads of its length.
    check_size(unsafe { libc::send(fd, data.as_ptr().cast(), data.len(), flags) })
}

/// Sends the handshake's last acknowledgement now if no data has carried it yet, and ends the
/// delayed-acknowledgement mode the dial began in (see `Handshake::AckWithFirstBytes`): from
/// here on the socket acknowledges as any other, so that a destination which writes twice and
/// waits for the first acknowledgement (Nagle) is never held up by the proxy.
pub(super) fn release_handshake_ack(fd: &OwnedFd) {
    // An error would mean a socket already failed, which its next read or write reports.
    let _ = socket2::SockRef::from(fd).set_tcp_quickack(true);
}

/// Shuts the socket down for writing: the EOF passed on (R5).
pub(super) fn shutdown_write(fd: RawFd) -> io::Result<()> {
    // SAFETY: no pointers.
    check(unsafe { libc::shutdown(fd, libc::SHUT_WR) }).map(drop)
}

/// Makes closing the socket send a reset.
pub(super) fn reset_on_close(fd: &OwnedFd) {
    let _ = socket2::SockRef::from(fd).set_linger(Some(std::time::Duration::ZERO));
}
