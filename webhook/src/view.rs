//! A review decoded for what the policy reads, and nothing else.
//!
//! kube-core's `AdmissionReview<Pod>` decodes every field of the pod (managedFields, probes,
//! ports, tolerations, status...) and, through its `#[serde(flatten)]` type meta, has serde
//! buffer the whole review in an untyped tree before decoding it a second time. The policy
//! reads little of it: the pod's labels and annotations; in the spec, containers and init
//! containers, volumes (a name and a kind of source each), the security context, the grace period and the restart policy; in a
//! container, its name, image, the names of its env variables that say a role, resources,
//! volume mounts, lifecycle and security context.
//!
//! [`ReviewView`] reads the review in one pass, strings borrowed where they have no escapes,
//! the pod as a [`PodView`] as it goes, and skips everything else unread (serde's
//! `IgnoredAny`). [`PodView::into_pod`] builds a typed Pod holding only those fields; with
//! [`PodView::metadata_present`] the policy gives it the very evaluation it gives the whole
//! pod (`buildbot_policy::evaluate_decoded`). The property test below checks that on
//! generated pods at every Pod Security level; the fuzz target `view` checks it on arbitrary
//! JSON, and `review_decoder` sends arbitrary reviews through this decoder.
//!
//! The webhook cuts environment variables whose names say no role before this reads the
//! review ([`crate::env_compact`]): serde costs about as much to skip one as to read one.
//!
//! What the API server sends has passed its own validation, so a field skipped here is
//! well-formed; a malformed skipped field is not an error here (the typed decode would
//! refuse it).

use std::borrow::Cow;
use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Container, EnvVar, Lifecycle, Pod, PodSecurityContext, PodSpec, ResourceRequirements,
    SecurityContext, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::de::IgnoredAny;
use serde::Deserialize;

/// An AdmissionReview: its type, and the request if there is one.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReviewView<'a> {
    #[serde(borrow, default)]
    pub api_version: Cow<'a, str>,
    #[serde(borrow, default)]
    pub kind: Cow<'a, str>,
    #[serde(borrow, default)]
    pub request: Option<RequestView<'a>>,
}

/// The parts of an AdmissionRequest the webhook reads.
#[derive(Debug)]
pub struct RequestView<'a> {
    pub uid: Cow<'a, str>,
    pub kind: KindView<'a>,
    pub operation: Cow<'a, str>,
    pub sub_resource: Option<Cow<'a, str>>,
    pub object: Option<Object<'a>>,
}

/// The request's object: read as a pod in the same pass when the request's kind, which the
/// API server sends before it, says Pod; else kept as raw JSON (see [`Object::into_pod_view`]).
#[derive(Debug)]
pub enum Object<'a> {
    Pod(PodView),
    Raw(&'a serde_json::value::RawValue),
}

impl Object<'_> {
    /// The object as a pod view, reading it now if it was kept raw.
    pub fn into_pod_view(self) -> Result<PodView, serde_json::Error> {
        match self {
            Object::Pod(view) => Ok(view),
            Object::Raw(raw) => serde_json::from_str(raw.get()),
        }
    }
}

/// A string borrowed from the input when it has no escapes (serde's own `Cow<str>` is
/// always owned outside derived structs).
struct Text<'a>(Cow<'a, str>);

impl<'de: 'a, 'a> Deserialize<'de> for Text<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> serde::de::Visitor<'de> for Visitor<'a> {
            type Value = Text<'a>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Text(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Text(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
                Ok(Text(Cow::Owned(v)))
            }
        }
        deserializer.deserialize_str(Visitor(std::marker::PhantomData))
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for RequestView<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> serde::de::Visitor<'de> for Visitor<'a> {
            type Value = RequestView<'a>;

            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an AdmissionRequest")
            }

            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<Self::Value, A::Error> {
                use serde::de::Error as _;
                let (mut uid, mut kind, mut operation) = (None, None::<KindView<'a>>, None);
                let (mut sub_resource, mut object) = (None, None);
                while let Some(Text(key)) = map.next_key::<Text<'a>>()? {
                    match key.as_ref() {
                        "uid" => uid = Some(map.next_value::<Text<'a>>()?.0),
                        "kind" => kind = Some(map.next_value()?),
                        "operation" => operation = Some(map.next_value::<Text<'a>>()?.0),
                        "subResource" => {
                            sub_resource = map.next_value::<Option<Text<'a>>>()?.map(|t| t.0);
                        }
                        "object" if kind.as_ref().is_some_and(|k| k.kind == "Pod") => {
                            object = map.next_value::<Option<PodView>>()?.map(Object::Pod);
                        }
                        "object" => {
                            object = map
                                .next_value::<Option<&'a serde_json::value::RawValue>>()?
                                .map(Object::Raw);
                        }
                        _ => {
                            map.next_value::<serde::de::IgnoredAny>()?;
                        }
                    }
                }
                Ok(RequestView {
                    uid: uid.ok_or_else(|| A::Error::missing_field("uid"))?,
                    kind: kind.ok_or_else(|| A::Error::missing_field("kind"))?,
                    operation: operation.ok_or_else(|| A::Error::missing_field("operation"))?,
                    sub_resource,
                    object,
                })
            }
        }
        deserializer.deserialize_map(Visitor(std::marker::PhantomData))
    }
}

/// The review read again with the object kept raw, when [`ReviewView`] failed: a pod that
/// does not decode is then told apart from a body that is no review.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RawReviewView<'a> {
    #[serde(borrow, default)]
    api_version: Cow<'a, str>,
    #[serde(borrow, default)]
    kind: Cow<'a, str>,
    #[serde(borrow, default)]
    request: Option<RawRequestView<'a>>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawRequestView<'a> {
    #[serde(borrow)]
    uid: Cow<'a, str>,
    #[serde(borrow)]
    kind: KindView<'a>,
    #[serde(borrow)]
    operation: Cow<'a, str>,
    #[serde(borrow, default)]
    sub_resource: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    object: Option<&'a serde_json::value::RawValue>,
}

impl<'a> RawReviewView<'a> {
    pub fn into_review(self) -> ReviewView<'a> {
        ReviewView {
            api_version: self.api_version,
            kind: self.kind,
            request: self.request.map(|r| RequestView {
                uid: r.uid,
                kind: r.kind,
                operation: r.operation,
                sub_resource: r.sub_resource,
                object: r.object.map(Object::Raw),
            }),
        }
    }
}

/// The request's GroupVersionKind: its kind.
#[derive(Debug, Deserialize)]
pub struct KindView<'a> {
    #[serde(borrow)]
    pub kind: Cow<'a, str>,
}

/// A pod, as far as the policy reads it.
#[derive(Debug, Default, Deserialize)]
pub struct PodView {
    #[serde(default)]
    metadata: Option<MetaView>,
    // Boxed, as the large parts below: the view is moved up through the review as it is read.
    #[serde(default)]
    spec: Option<Box<SpecView>>,
}

#[derive(Debug, Default, Deserialize)]
struct MetaView {
    #[serde(default)]
    labels: Option<BTreeMap<String, String>>,
    #[serde(default)]
    annotations: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct SpecView {
    // k8s-openapi reads a missing list as empty, required or not.
    #[serde(default)]
    containers: Vec<ContainerView>,
    #[serde(default)]
    init_containers: Option<Vec<ContainerView>>,
    #[serde(default)]
    volumes: Option<Vec<VolumeView>>,
    #[serde(default)]
    security_context: Option<Box<PodSecurityContext>>,
    #[serde(default)]
    termination_grace_period_seconds: Option<i64>,
    #[serde(default)]
    restart_policy: Option<String>,
}

/// A volume as the policy reads it: its name and which kind of source it has, each source
/// skipped unread (a typed `Volume` is 3 KB with a field for each of 30 kinds). These are the
/// kinds `buildbot_policy`'s volume permissions tell apart; any other is "other" there too.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct VolumeView {
    #[serde(default)]
    name: String,
    #[serde(default)]
    host_path: Option<IgnoredAny>,
    #[serde(default)]
    persistent_volume_claim: Option<IgnoredAny>,
    #[serde(default)]
    ephemeral: Option<IgnoredAny>,
    #[serde(default)]
    empty_dir: Option<IgnoredAny>,
    #[serde(default)]
    nfs: Option<IgnoredAny>,
    #[serde(default)]
    csi: Option<IgnoredAny>,
    #[serde(default)]
    config_map: Option<IgnoredAny>,
    #[serde(default)]
    secret: Option<IgnoredAny>,
    #[serde(default)]
    projected: Option<IgnoredAny>,
    #[serde(default, rename = "downwardAPI")]
    downward_api: Option<IgnoredAny>,
}

impl VolumeView {
    /// A typed volume with the same name and kind of source, the source empty.
    fn into_volume(self) -> Volume {
        fn empty<T: Default>(source: Option<IgnoredAny>) -> Option<T> {
            source.map(|_| T::default())
        }
        Volume {
            name: self.name,
            host_path: empty(self.host_path),
            persistent_volume_claim: empty(self.persistent_volume_claim),
            ephemeral: empty(self.ephemeral),
            empty_dir: empty(self.empty_dir),
            nfs: empty(self.nfs),
            csi: empty(self.csi),
            config_map: empty(self.config_map),
            secret: empty(self.secret),
            projected: empty(self.projected),
            downward_api: empty(self.downward_api),
            ..Volume::default()
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ContainerView {
    #[serde(default)]
    name: String,
    #[serde(default)]
    image: Option<String>,
    #[serde(default)]
    env: Option<EnvNames>,
    // Boxed: the typed parts are large and mostly absent; a container stays small to move.
    #[serde(default)]
    resources: Option<Box<ResourceRequirements>>,
    #[serde(default)]
    volume_mounts: Option<Vec<VolumeMount>>,
    #[serde(default)]
    lifecycle: Option<Box<Lifecycle>>,
    #[serde(default)]
    security_context: Option<Box<SecurityContext>>,
}

/// A container's environment as the policy reads it: the names that say a role
/// (`buildbot_policy::env_role`), each variable read as far as its name, the rest skipped.
#[derive(Debug, Default)]
struct EnvNames(Vec<String>);

/// A map key or string as bytes: compared, never shown, so serde_json skips its UTF-8 check
/// (a fifth of reading a pod with many environment variables).
struct Bytes<'a>(Cow<'a, [u8]>);

impl<'de: 'a, 'a> Deserialize<'de> for Bytes<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> serde::de::Visitor<'de> for Visitor<'a> {
            type Value = Bytes<'a>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_bytes<E>(self, v: &'de [u8]) -> Result<Self::Value, E> {
                Ok(Bytes(Cow::Borrowed(v)))
            }
            fn visit_bytes<E>(self, v: &[u8]) -> Result<Self::Value, E> {
                Ok(Bytes(Cow::Owned(v.to_vec())))
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Bytes(Cow::Borrowed(v.as_bytes())))
            }
            fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Bytes(Cow::Owned(v.as_bytes().to_vec())))
            }
        }
        deserializer.deserialize_bytes(Visitor(std::marker::PhantomData))
    }
}

/// An environment variable's name when it says a role (`buildbot_policy::env_role`); the
/// rest of the variable is skipped.
struct EnvName(Option<String>);

impl<'de> Deserialize<'de> for EnvName {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = EnvName;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an environment variable")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<Self::Value, A::Error> {
                let mut kept = None;
                while let Some(Bytes(key)) = map.next_key::<Bytes<'de>>()? {
                    if *key != *b"name" {
                        map.next_value::<serde::de::IgnoredAny>()?;
                        continue;
                    }
                    let name = map.next_value::<Option<Bytes<'de>>>()?;
                    kept = name
                        .filter(|Bytes(name)| buildbot_policy::env_role(name).is_some())
                        .and_then(|Bytes(name)| String::from_utf8(name.into_owned()).ok());
                }
                Ok(EnvName(kept))
            }
        }
        deserializer.deserialize_map(Visitor)
    }
}

impl<'de> Deserialize<'de> for EnvNames {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = EnvNames;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a list of environment variables")
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<Self::Value, A::Error> {
                let mut names = Vec::new();
                while let Some(EnvName(name)) = seq.next_element()? {
                    names.extend(name);
                }
                Ok(EnvNames(names))
            }
        }
        deserializer.deserialize_seq(Visitor)
    }
}

impl ContainerView {
    fn into_container(self) -> Container {
        Container {
            name: self.name,
            image: self.image,
            env: self.env.map(|env| {
                env.0
                    .into_iter()
                    .map(|name| EnvVar {
                        name,
                        ..EnvVar::default()
                    })
                    .collect()
            }),
            resources: self.resources.map(|r| *r),
            volume_mounts: self.volume_mounts,
            lifecycle: self.lifecycle.map(|l| *l),
            security_context: self.security_context.map(|s| *s),
            ..Container::default()
        }
    }
}

impl PodView {
    /// Whether the document has `metadata` (see `buildbot_policy::evaluate_decoded`).
    pub fn metadata_present(&self) -> bool {
        self.metadata.is_some()
    }

    /// A typed Pod with the fields the policy reads, and no others.
    pub fn into_pod(self) -> Pod {
        let metadata = self
            .metadata
            .map_or_else(ObjectMeta::default, |m| ObjectMeta {
                labels: m.labels,
                annotations: m.annotations,
                ..ObjectMeta::default()
            });
        let spec = self.spec.map(|s| *s).map(|s| PodSpec {
            containers: s
                .containers
                .into_iter()
                .map(ContainerView::into_container)
                .collect(),
            init_containers: s
                .init_containers
                .map(|c| c.into_iter().map(ContainerView::into_container).collect()),
            volumes: s
                .volumes
                .map(|v| v.into_iter().map(VolumeView::into_volume).collect()),
            security_context: s.security_context.map(|sc| *sc),
            termination_grace_period_seconds: s.termination_grace_period_seconds,
            restart_policy: s.restart_policy,
            ..PodSpec::default()
        });
        Pod {
            metadata,
            spec,
            status: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_what_the_policy_reads_and_skips_the_rest() {
        let body = br#"{"kind":"AdmissionReview","apiVersion":"admission.k8s.io/v1","request":{
            "uid":"u-1","kind":{"group":"","version":"v1","kind":"Pod"},"operation":"CREATE",
            "userInfo":{"username":"x","extra":{"a":["b"]}},"oldObject":null,
            "object":{"metadata":{"name":"w","labels":{"app":"buildbot"},"managedFields":[{"manager":"kubectl","fieldsV1":{"f:spec":{}}}]},
              "spec":{"containers":[{"name":"worker","image":"buildbot/buildbot-worker","ports":[{"containerPort":1}],
                "env":[{"name":"BUILDMASTER","value":"m"}],"livenessProbe":{"exec":{"command":["true"]}}}],
                "tolerations":[{"key":"k"}],"restartPolicy":"Never"},
              "status":{"phase":"Pending"}}}}"#;
        let review: ReviewView = serde_json::from_slice(body).unwrap();
        assert_eq!(review.kind, "AdmissionReview");
        let request = review.request.unwrap();
        assert!(matches!(request.uid, Cow::Borrowed("u-1")));
        assert_eq!(request.operation, "CREATE");
        let Some(Object::Pod(view)) = request.object else {
            panic!("a Pod is read as a pod in the same pass")
        };
        assert!(view.metadata_present());
        let pod = view.into_pod();
        assert_eq!(pod.metadata.name, None, "not read");
        assert_eq!(pod.metadata.labels.unwrap()["app"], "buildbot");
        let spec = pod.spec.unwrap();
        assert_eq!(spec.restart_policy.as_deref(), Some("Never"));
        assert_eq!(
            spec.containers[0].env.as_ref().unwrap()[0].name,
            "BUILDMASTER"
        );
        assert!(spec.containers[0].ports.is_none(), "not read");
        assert!(spec.tolerations.is_none(), "not read");
    }

    #[test]
    fn env_names_are_kept_when_they_say_a_role_however_written() {
        let names = |env: &str| -> Vec<String> {
            let object = format!(r#"{{"spec":{{"containers":[{{"name":"c","env":{env}}}]}}}}"#);
            let pod = serde_json::from_str::<PodView>(&object).unwrap().into_pod();
            let env = pod.spec.unwrap().containers[0]
                .env
                .clone()
                .unwrap_or_default();
            env.into_iter().map(|e| e.name).collect()
        };
        assert_eq!(
            names(r#"[{"name":"PATH","value":"/bin"},{"value":"m","name":"BUILDMASTER"}]"#),
            ["BUILDMASTER"]
        );
        // An escaped name is read; a name in a value is not a name.
        assert_eq!(names(r#"[{"name":"WORKER\u004eAME"}]"#), ["WORKERNAME"]);
        assert_eq!(names(r#"[{"name":"X","value":"BUILDMASTER"}]"#), [""; 0]);
        assert_eq!(
            names(r#"[{"name":"BUILDBOT_CONFIG_DIR"},{"name":"BUILDMASTER_PORT"}]"#),
            ["BUILDBOT_CONFIG_DIR"]
        );
        assert!(serde_json::from_str::<PodView>(
            r#"{"spec":{"containers":[{"name":"c","env":[{"name":["BUILDMASTER"]}]}]}}"#
        )
        .is_err());
    }

    #[test]
    fn an_object_before_its_kind_is_read_afterwards() {
        let body = br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{
            "object":{"metadata":{"labels":{"app":"buildbot"}},"spec":{"containers":[{"name":"w"}]}},
            "uid":"u","kind":{"kind":"Pod"},"operation":"CREATE"}}"#;
        let review: ReviewView = serde_json::from_slice(body).unwrap();
        let object = review.request.unwrap().object.unwrap();
        assert!(matches!(object, Object::Raw(_)));
        let pod = object.into_pod_view().unwrap().into_pod();
        assert_eq!(pod.spec.unwrap().containers[0].name, "w");
    }

    #[test]
    fn what_the_typed_pod_refuses_in_the_fields_read_is_refused_here_too() {
        for object in [
            r#"{}"#,
            r#"{"spec":{}}"#,
            r#"{"spec":{"containers":[{"image":"x"}]}}"#,
            r#"{"spec":{"containers":[{"name":"x","env":[{"value":"v"}]}]}}"#,
            r#"{"spec":{"containers":5}}"#,
            r#"{"spec":{"containers":[{"name":"x","resources":{"requests":{"cpu":1}}}]}}"#,
            r#"{"metadata":{"labels":{"a":1}},"spec":{"containers":[]}}"#,
            r#"{"spec":{"containers":[],"terminationGracePeriodSeconds":"30"}}"#,
        ] {
            assert_eq!(
                serde_json::from_str::<PodView>(object).is_ok(),
                serde_json::from_str::<Pod>(object).is_ok(),
                "{object}"
            );
        }
    }

    mod properties {
        use super::*;
        use buildbot_policy::testing::pod_strategy;
        use buildbot_policy::{evaluate_decoded, evaluate_json_in, PodSecurityLevel, Policy};
        use proptest::prelude::*;
        use serde_json::json;

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(512))]

            /// The view gives the evaluation the whole document gives: same role, patch,
            /// changes and warnings, whatever the fields it skips hold.
            #[test]
            fn the_view_gives_the_patch_of_the_whole_pod(
                pod in pod_strategy(),
                no_metadata in any::<bool>(),
                noise in any::<bool>(),
                level in prop::sample::select(vec![
                    PodSecurityLevel::Privileged,
                    PodSecurityLevel::Baseline,
                    PodSecurityLevel::Restricted,
                ]),
            ) {
                let mut doc = pod;
                if no_metadata {
                    doc.as_object_mut().unwrap().remove("metadata");
                }
                if noise {
                    // What real reviews carry and the policy never reads.
                    doc["status"] = json!({"phase": "Pending"});
                    doc["spec"]["tolerations"] = json!([{"key": "k", "operator": "Exists"}]);
                    if let Some(meta) = doc.get_mut("metadata") {
                        meta["managedFields"] = json!([{"manager": "kubectl", "fieldsV1": {"f:spec": {}}}]);
                        meta["uid"] = json!("0c9a8d74");
                    }
                    for c in doc["spec"]["containers"].as_array_mut().unwrap() {
                        c["ports"] = json!([{"containerPort": 8080}]);
                        c["livenessProbe"] = json!({"httpGet": {"path": "/", "port": 8080}});
                    }
                }
                let policy = Policy::default();
                let whole = evaluate_json_in(&doc, &policy, level).unwrap();
                let view: PodView = serde_json::from_slice(&serde_json::to_vec(&doc).unwrap()).unwrap();
                let present = view.metadata_present();
                let viewed = evaluate_decoded(&view.into_pod(), present, &policy, level);
                prop_assert_eq!(whole, viewed);
            }
        }
    }
}
