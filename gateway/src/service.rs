//! The gateway role: its shared state, its HTTP router, and [`run`].

use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::response::IntoResponse;
use axum::routing::{delete, get, patch, post, put};
use axum::serve::ListenerExt;
use axum::Router;
use parley_projector::Views;
use parley_schemas::frames::ErrorCode;
use parley_sequencer::EventLog;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::info;

use crate::auth::Auth;
use crate::config::GatewayConfig;
use crate::conversations;
use crate::counts::ReceiptCounter;
use crate::error::ApiError;
use crate::groups::GroupIndex;
use crate::membership::MemberCache;
use crate::presence::PresenceAgent;
use crate::sessions::Sessions;
use crate::{devices, longpoll, receipts, ws};

/// What every request handler of a gateway shares.
pub struct Gateway {
    pub config: GatewayConfig,
    pub log: Arc<dyn EventLog>,
    pub views: Arc<dyn Views>,
    pub sessions: Arc<Sessions>,
    /// The groups of the users connected here, for large groups' broadcasts.
    pub groups: Arc<GroupIndex>,
    pub presence: Arc<PresenceAgent>,
    pub auth: Auth,
    pub members: Arc<MemberCache>,
    /// Sends waiting for their routed copy.
    pub echoes: Arc<crate::echoes::Echoes>,
    /// Message ids sent through this gateway lately: a send of one again takes the
    /// careful path even when the client does not mark it a retry.
    pub recent: crate::send::RecentIds,
    /// Receipt keys written through this gateway (one writer per key).
    pub receipt_marks: crate::receipts::Marks,
    /// Partitions of `events`.
    pub events_partitions: i32,
    /// Push devices and mutes, read from the `devices` topic.
    pub devices: Arc<parley_push::DeviceBook>,
    /// Presence frames and queries.
    pub contacts: Arc<crate::contacts::Contacts>,
    /// Rate limits.
    pub limits: Arc<crate::limits::Limits>,
    /// Seals message bodies (with a key-encryption key configured).
    pub sealer: Option<Arc<parley_keys::Sealer>>,
    pub shutdown: CancellationToken,
}

pub type Shared = Arc<Gateway>;

impl Gateway {
    /// Appends `record` to `topic` keyed by `conversation` (receipts, typing: the same
    /// partition number as the conversation's in `events`), once the broker has it.
    pub async fn append_about<R: parley_schemas::Record>(
        &self,
        topic: &str,
        conversation: &str,
        record: &R,
    ) -> Result<parley_sequencer::Position, ApiError> {
        let value =
            parley_schemas::encode(record).map_err(|e| ApiError::bad_request(e.to_string()))?;
        Ok(self
            .log
            .append(topic, conversation.as_bytes(), Some(&value))
            .await?)
    }

    /// Appends a record about `conversation` to `events` (key = the conversation); the
    /// position comes back only once the broker has acknowledged it.
    pub async fn append_event(
        &self,
        conversation: &str,
        record: &parley_schemas::AnyRecord,
    ) -> Result<parley_sequencer::Position, ApiError> {
        let value = record
            .encode()
            .map_err(|e| ApiError::bad_request(e.to_string()))?;
        Ok(self
            .log
            .append(
                &self.config.topics.events,
                conversation.as_bytes(),
                Some(&value),
            )
            .await?)
    }
}

pub fn router(state: Shared) -> Router {
    let mut app = Router::new()
        .route("/", get(crate::web::index))
        .route("/{file}", get(crate::web::asset))
        .route("/v1/ws", get(ws::upgrade))
        .route("/v1/ws-ticket", post(crate::auth::ws_ticket))
        .route(
            "/v1/conversations",
            post(conversations::create).get(conversations::list),
        )
        .route(
            "/v1/conversations/{id}",
            get(crate::roles::show).patch(crate::roles::settings),
        )
        .route(
            "/v1/conversations/{id}/admins/{user_id}",
            put(crate::roles::grant).delete(crate::roles::revoke),
        )
        .route(
            "/v1/conversations/{id}/members",
            post(conversations::add_members),
        )
        .route(
            "/v1/conversations/{id}/members/{user_id}",
            delete(conversations::remove_member),
        )
        .route(
            "/v1/conversations/{id}/messages",
            get(conversations::history).post(longpoll::post_message),
        )
        .route(
            "/v1/conversations/{id}/messages/{seq}",
            patch(crate::messages::edit).delete(crate::messages::delete),
        )
        .route(
            "/v1/conversations/{id}/messages/{seq}/reactions/{emoji}",
            put(crate::messages::react).delete(crate::messages::unreact),
        )
        .route(
            "/v1/conversations/{id}/receipts",
            get(receipts::list).post(receipts::post),
        )
        .route("/v1/inbox", get(receipts::inbox))
        .route(
            "/v1/users/{user_id}/content",
            delete(crate::rest::erasure::erase),
        )
        .route("/v1/search", get(crate::search::search))
        .route("/v1/presence", get(presence_http))
        .route(
            "/v1/me/presence",
            get(crate::privacy::show).put(crate::privacy::set),
        )
        .route("/v1/devices", post(devices::register).get(devices::list))
        .route("/v1/devices/{device_id}", delete(devices::remove))
        .route(
            "/v1/conversations/{id}/mute",
            post(devices::mute).delete(devices::unmute),
        )
        .route(
            "/v1/conversations/{id}/opt-in",
            post(devices::opt_in).delete(devices::opt_out),
        )
        .route("/v1/events", get(longpoll::poll))
        .route("/v1/uploads", post(crate::attachments::routes::create))
        .route(
            "/v1/uploads/{id}",
            put(crate::attachments::routes::upload).layer(DefaultBodyLimit::max(
                usize::try_from(state.config.attachment_limits.max_bytes).unwrap_or(usize::MAX),
            )),
        )
        .route(
            "/v1/attachments/{id}",
            get(crate::attachments::routes::download),
        )
        .route("/v1/openapi.json", get(crate::openapi::serve));
    if state.config.dev_auth {
        app = app.route("/v1/dev/token", post(conversations::dev_token));
    }
    let health = state.config.health.clone();
    app.fallback(|| async {
        ApiError::new(ErrorCode::NotFound, "no such endpoint").into_response()
    })
    .layer(DefaultBodyLimit::max(state.config.max_frame_bytes))
    .layer(axum::middleware::map_response(crate::error::json_errors))
    .with_state(state)
    .merge(parley_ops::router(health))
}

#[derive(serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PresenceParams {
    /// Comma-separated user ids.
    #[serde(default)]
    user_ids: String,
}

/// `GET /v1/presence?user_ids=a,b`
async fn presence_http(
    axum::extract::State(state): axum::extract::State<Shared>,
    crate::auth::Caller(me): crate::auth::Caller,
    query: Result<axum::extract::Query<PresenceParams>, axum::extract::rejection::QueryRejection>,
) -> Result<axum::Json<serde_json::Value>, ApiError> {
    let axum::extract::Query(q) = query.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let ids: Vec<String> = q
        .user_ids
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect();
    if ids.is_empty() {
        return Err(ApiError::bad_request(
            "user_ids: one or more user ids, comma-separated",
        ));
    }
    state
        .limits
        .check(crate::limits::Limit::Read(presence_cost(&state, &me)), &me)?;
    let users = state.contacts.query(&me, &ids).await?;
    Ok(axum::Json(serde_json::json!({ "users": users })))
}

/// What a presence query by `user` costs: more when they have no session here (their
/// contacts are read from the views).
pub fn presence_cost(state: &Shared, user: &str) -> crate::limits::Read {
    if state.sessions.has_user(user) {
        crate::limits::Read::Presence
    } else {
        crate::limits::Read::PresenceCold
    }
}

/// Where the gateway's presence is kept for people to see.
pub enum PresenceSource {
    /// Derived from the `presence` topic the gateways write anyway.
    Log,
    /// An external store (Redis), written alongside the topic.
    Store(Arc<dyn parley_presence::PresenceStore>),
}

/// The gateway role: serve clients on `listener` until `shutdown`.
pub async fn run(
    config: GatewayConfig,
    log: Arc<dyn EventLog>,
    views: Arc<dyn Views>,
    presence_source: PresenceSource,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    parley_ops::metrics::install();
    let auth = Auth::new(&config.jwt_secret).map_err(anyhow::Error::msg)?;
    let health = config.health.clone();
    health.set("deliveries", false, "starting");
    let events_partitions = log.partition_count(&config.topics.events).await?;
    let slots = log.partition_count(&config.topics.deliveries).await?;
    anyhow::ensure!(
        (0..slots).contains(&config.gateway_id),
        "gateway id {} has no slot: {} has {slots} partitions (0..{})",
        config.gateway_id,
        config.topics.deliveries,
        slots - 1
    );
    let sessions = Arc::new(Sessions::default());
    let groups = Arc::new(GroupIndex::default());
    let counts = Arc::new(ReceiptCounter::default());
    let members = Arc::new(MemberCache::default());
    let echoes = Arc::new(crate::echoes::Echoes::default());
    let catch_up = std::time::Duration::from_secs(30);
    let (store, mirror): (Arc<dyn parley_presence::PresenceStore>, _) = match presence_source {
        PresenceSource::Log => (
            parley_presence::LogPresence::follow(
                log.clone(),
                &config.topics.presence,
                catch_up,
                shutdown.clone(),
            )
            .await?,
            None,
        ),
        PresenceSource::Store(s) => (s.clone(), Some(s)),
    };
    let presence = Arc::new(
        PresenceAgent::new(log.clone(), config.clone(), events_partitions as usize)
            .mirrored_to(mirror),
    );
    let devices = parley_push::DeviceBook::follow(
        log.clone(),
        &config.topics.devices,
        catch_up,
        shutdown.clone(),
    )
    .await?;
    let contacts = Arc::new(crate::contacts::Contacts::new(
        store,
        views.clone(),
        log.clone(),
        &config.topics.events,
        events_partitions,
        sessions.clone(),
        devices.clone(),
        config.presence_group_limit,
    ));
    tokio::spawn(
        contacts
            .clone()
            .run(config.presence_every, shutdown.clone()),
    );
    let sealer = match &config.kek {
        None => None,
        Some(kek) => {
            let ring = parley_keys::TransitRing::start(
                log.clone(),
                &config.topics.transit_keys,
                kek.clone(),
                shutdown.clone(),
            )
            .await?;
            let sealer = parley_keys::Sealer::new(
                kek.clone(),
                config.gateway_id,
                log.clone(),
                config.topics.keys.clone(),
                config.topics.transit_keys.clone(),
                events_partitions,
                ring,
            );
            sealer.spawn_upkeep(shutdown.clone());
            Some(sealer)
        }
    };
    let ring = sealer.as_ref().map(|s| s.ring().clone());
    let state = Arc::new(Gateway {
        sealer,
        auth,
        config: config.clone(),
        log: log.clone(),
        views,
        sessions: sessions.clone(),
        groups: groups.clone(),
        presence: presence.clone(),
        members: members.clone(),
        echoes: echoes.clone(),
        recent: crate::send::RecentIds::default(),
        receipt_marks: crate::receipts::Marks::default(),
        events_partitions,
        devices,
        contacts,
        limits: Arc::new(crate::limits::Limits::new(&config.limits)),
        shutdown: shutdown.clone(),
    });
    tokio::spawn(state.limits.clone().run(shutdown.clone()));
    if config.gateway_id == 0 {
        tokio::spawn(crate::attachments::sweeper::run(
            state.clone(),
            config.attachment_sweep,
            shutdown.clone(),
        ));
    }

    // One gateway per slot: a second one started with the same id takes the slot over
    // and this one stops (it must not end the presence the newcomer now keeps).
    let lease_name = format!("{}.slot-{}", config.topics.deliveries, config.gateway_id);
    let mut lease = log.lease(&lease_name, &config.topics.dead_letters).await?;
    match presence
        .clear_stale(std::time::Duration::from_secs(10))
        .await
    {
        Ok(0) => {}
        Ok(n) => info!(
            ended = n,
            "ended presence left by an earlier run of this slot"
        ),
        Err(e) => tracing::warn!(error = %e, "could not end stale presence; it expires by itself"),
    }
    let (started_tx, started_rx) = tokio::sync::oneshot::channel();
    let deliveries = tokio::spawn(crate::deliveries::follow(
        log.clone(),
        config.topics.clone(),
        config.gateway_id,
        crate::deliveries::Local {
            sessions: sessions.clone(),
            broadcasts: crate::broadcasts::Broadcasts::spawn(crate::broadcasts::Targets {
                sessions: sessions.clone(),
                groups: groups.clone(),
                counts: counts.clone(),
                echoes: echoes.clone(),
                members,
                contacts: state.contacts.clone(),
                ring: ring.clone(),
            })
            .0,
            presence: presence.clone(),
            echoes,
            contacts: state.contacts.clone(),
            ring,
        },
        started_tx,
        shutdown.clone(),
    ));
    let _ = started_rx.await;
    health.set(
        "deliveries",
        true,
        format!("consuming slot {}", config.gateway_id),
    );
    tokio::spawn(crate::readiness::watch(
        log.clone(),
        state.views.clone(),
        config.topics.events.clone(),
        config.ready_lag,
        health.clone(),
        shutdown.clone(),
    ));
    state
        .groups
        .baseline(&log.end_offsets(&config.topics.events).await?);
    let lapsed = {
        let sessions = state.sessions.clone();
        move |user: &str| {
            sessions.close_user(
                user,
                crate::sessions::CLOSE_PRESENCE_LAPSED,
                "presence_lapsed: reconnect and sync",
            )
        }
    };
    let heartbeat = tokio::spawn(presence.clone().heartbeat(lapsed, shutdown.clone()));
    tokio::spawn(counts.run(
        state.views.clone(),
        sessions,
        groups,
        config.receipt_counts_every,
        shutdown.clone(),
    ));

    info!(addr = %listener.local_addr()?, gateway = config.gateway_id, "gateway listening");
    let app = router(state).into_make_service_with_connect_info::<std::net::SocketAddr>();
    // Small frames must leave at once, not wait for Nagle's algorithm.
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    let server =
        axum::serve(listener, app).with_graceful_shutdown(shutdown.clone().cancelled_owned());
    let mut fenced = false;
    let result = tokio::select! {
        r = server => r.map_err(anyhow::Error::from),
        r = deliveries => match r {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(e),
            Err(e) => Err(e.into()),
        },
        why = lease.lost() => {
            fenced = true;
            Err(anyhow::anyhow!(
                "gateway slot {} was taken over by a gateway started later with the same \
                 --gateway-id ({why}); give every gateway its own id",
                config.gateway_id
            ))
        }
    };
    shutdown.cancel();
    health.set("deliveries", false, "stopped");
    let _ = heartbeat.await;
    if !fenced {
        presence.clear().await;
    }
    info!(gateway = config.gateway_id, "gateway stopped");
    result
}
