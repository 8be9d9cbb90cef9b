//! The console's two languages: Chinese (zh-CN, the default) and English. Every text of a page
//! is a field of [`Texts`], so a text missing in one language does not compile.

use suyun_store::Phase;

/// A language of the console.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Lang {
    /// 简体中文, the default.
    #[default]
    Zh,
    /// English.
    En,
}

/// The cookie that keeps the language chosen.
pub const COOKIE: &str = "suyun-lang";

impl Lang {
    /// The language a cookie value names (Chinese for anything else).
    pub fn from_cookie(value: Option<&str>) -> Lang {
        match value {
            Some("en") => Lang::En,
            _ => Lang::Zh,
        }
    }

    /// Its texts.
    pub fn texts(self) -> &'static Texts {
        match self {
            Lang::Zh => &ZH,
            Lang::En => &EN,
        }
    }

    /// The cookie value and `?lang=` parameter naming it.
    pub fn code(self) -> &'static str {
        match self {
            Lang::Zh => "zh",
            Lang::En => "en",
        }
    }

    /// The other language (the switch in the header offers it).
    pub fn other(self) -> Lang {
        match self {
            Lang::Zh => Lang::En,
            Lang::En => Lang::Zh,
        }
    }
}

/// Every text of the console in one language.
#[derive(Debug)]
pub struct Texts {
    pub html_lang: &'static str,
    pub app: &'static str,
    pub skip: &'static str,
    pub nav_label: &'static str,
    pub nav_overview: &'static str,
    pub nav_systems: &'static str,
    pub nav_waves: &'static str,
    pub nav_nodes: &'static str,
    pub nav_tenants: &'static str,
    pub signed_in_as: &'static str,
    pub read_only: &'static str,
    pub logout: &'static str,
    pub language_name: &'static str,
    pub stale: &'static str,
    pub times_note: &'static str,
    pub live_note: &'static str,
    pub login_title: &'static str,
    pub token: &'static str,
    pub login_button: &'static str,
    pub login_hint: &'static str,
    pub login_failed: &'static str,
    pub capacity: &'static str,
    pub waves_progress: &'static str,
    pub systems_by_phase: &'static str,
    pub blocked_reasons: &'static str,
    pub awaiting_approval: &'static str,
    pub awaiting_link: &'static str,
    pub none: &'static str,
    pub eta: &'static str,
    pub completed: &'static str,
    pub systems: &'static str,
    pub count: &'static str,
    pub cpu: &'static str,
    pub memory: &'static str,
    pub storage: &'static str,
    pub gpu: &'static str,
    pub search: &'static str,
    pub phase: &'static str,
    pub tenant: &'static str,
    pub wave: &'static str,
    pub node: &'static str,
    pub sort: &'static str,
    pub any: &'static str,
    pub apply: &'static str,
    pub clear: &'static str,
    pub sort_id: &'static str,
    pub sort_name: &'static str,
    pub sort_phase: &'static str,
    pub sort_start: &'static str,
    pub system_id: &'static str,
    pub name: &'static str,
    pub planned_start: &'static str,
    pub paging: fn(usize, usize, usize) -> String,
    pub prev: &'static str,
    pub next: &'static str,
    pub no_match: &'static str,
    pub status: &'static str,
    pub region: &'static str,
    pub security_level: &'static str,
    pub attempts: &'static str,
    pub started: &'static str,
    pub finished: &'static str,
    pub conditions: &'static str,
    pub condition_type: &'static str,
    pub reason: &'static str,
    pub message: &'static str,
    pub why_blocked: &'static str,
    pub status_message: &'static str,
    pub history: &'static str,
    pub time: &'static str,
    pub transition: &'static str,
    pub actor: &'static str,
    pub approval: &'static str,
    pub approval_required: &'static str,
    pub approval_not_required: &'static str,
    pub approved_by: &'static str,
    pub approval_pending: &'static str,
    pub approve: &'static str,
    pub revoke: &'static str,
    pub approval_reason: &'static str,
    pub confirm_approve: &'static str,
    pub confirm_revoke: &'static str,
    pub confirm: &'static str,
    pub cancel: &'static str,
    pub done_approved: &'static str,
    pub done_already: &'static str,
    pub done_revoked: &'static str,
    pub not_found: &'static str,
    pub not_found_detail: fn(&str, &str) -> String,
    pub error: &'static str,
    pub back: &'static str,
    pub executor: &'static str,
    pub tier: &'static str,
    pub ready: &'static str,
    pub not_ready: &'static str,
    pub active_migrations: &'static str,
    pub allocated_of: &'static str,
    pub level: &'static str,
    pub home_node: &'static str,
    pub quota_used: &'static str,
    pub no_history: &'static str,
    pub kind_system: &'static str,
    pub kind_wave: &'static str,
    pub kind_page: &'static str,
}

/// 简体中文.
pub static ZH: Texts = Texts {
    html_lang: "zh-CN",
    app: "苏云 · 市级运维控制台",
    skip: "跳到正文",
    nav_label: "主导航",
    nav_overview: "概览",
    nav_systems: "系统",
    nav_waves: "迁移批次",
    nav_nodes: "节点",
    nav_tenants: "租户",
    signed_in_as: "当前用户",
    read_only: "只读",
    logout: "退出登录",
    language_name: "中文",
    stale: "状态存储暂时不可达，页面显示的是最后已知的数据。数据停留在：",
    times_note: "时间均为北京时间（UTC+8）。",
    live_note: "页面随状态变化自动更新。",
    login_title: "登录",
    token: "访问令牌",
    login_button: "登录",
    login_hint: "持有 USB Key 证书的用户无需登录：浏览器出示证书即可进入。",
    login_failed: "令牌无效或已被撤销。",
    capacity: "节点容量与利用率",
    waves_progress: "迁移批次进度",
    systems_by_phase: "各阶段系统数",
    blocked_reasons: "受阻原因",
    awaiting_approval: "等待我审批的割接",
    awaiting_link: "查看待审批系统",
    none: "无",
    eta: "预计完成",
    completed: "已完成",
    systems: "系统",
    count: "数量",
    cpu: "CPU",
    memory: "内存",
    storage: "存储",
    gpu: "GPU",
    search: "搜索（编号或名称）",
    phase: "阶段",
    tenant: "租户",
    wave: "批次",
    node: "节点",
    sort: "排序",
    any: "全部",
    apply: "筛选",
    clear: "清除筛选",
    sort_id: "按编号",
    sort_name: "按名称",
    sort_phase: "按阶段",
    sort_start: "按计划开始时间",
    system_id: "系统编号",
    name: "名称",
    planned_start: "计划开始",
    paging: |page, pages, total| format!("第 {page} / {pages} 页，共 {total} 个系统"),
    prev: "上一页",
    next: "下一页",
    no_match: "没有符合条件的系统。",
    status: "状态",
    region: "区域",
    security_level: "安全等级",
    attempts: "尝试次数",
    started: "开始时间",
    finished: "完成时间",
    conditions: "状况",
    condition_type: "类型",
    reason: "原因",
    message: "说明",
    why_blocked: "受阻原因（调度器的说明）",
    status_message: "状态说明",
    history: "历史记录",
    time: "时间",
    transition: "变化",
    actor: "操作人",
    approval: "割接审批",
    approval_required: "本批次的割接需要审批。",
    approval_not_required: "本批次的割接无需审批。",
    approved_by: "批准人",
    approval_pending: "已批准，等待割接开始",
    approve: "批准割接",
    revoke: "撤销批准",
    approval_reason: "理由或工单号（可选）",
    confirm_approve: "确认批准以下系统的割接？",
    confirm_revoke: "确认撤销以下系统的割接批准？",
    confirm: "确认",
    cancel: "取消",
    done_approved: "已批准割接。",
    done_already: "此前已有批准，保持不变。",
    done_revoked: "已撤销割接批准。",
    not_found: "未找到",
    not_found_detail: |kind, name| format!("没有名为 {name} 的{kind}。"),
    error: "无法完成请求",
    back: "返回",
    executor: "执行方式",
    tier: "层级",
    ready: "就绪",
    not_ready: "未就绪",
    active_migrations: "进行中的迁移",
    allocated_of: "已分配 / 可分配",
    level: "级别",
    home_node: "归属节点",
    quota_used: "已用 / 配额",
    no_history: "尚无记录。",
    kind_system: "系统",
    kind_wave: "迁移批次",
    kind_page: "页面",
};

/// English.
pub static EN: Texts = Texts {
    html_lang: "en",
    app: "Suyun · City Operations Console",
    skip: "Skip to content",
    nav_label: "Main navigation",
    nav_overview: "Overview",
    nav_systems: "Systems",
    nav_waves: "Waves",
    nav_nodes: "Nodes",
    nav_tenants: "Tenants",
    signed_in_as: "Signed in as",
    read_only: "read-only",
    logout: "Log out",
    language_name: "English",
    stale: "The status store is unreachable; this page shows the last known data, as of",
    times_note: "Times are China Standard Time (UTC+8).",
    live_note: "This page updates itself when the state changes.",
    login_title: "Log in",
    token: "Access token",
    login_button: "Log in",
    login_hint: "Users with a client certificate (USB key) need not log in: the browser presents it.",
    login_failed: "The token is unknown or has been withdrawn.",
    capacity: "Node capacity and utilisation",
    waves_progress: "Wave progress",
    systems_by_phase: "Systems by phase",
    blocked_reasons: "Why systems are blocked",
    awaiting_approval: "Cutovers waiting for my approval",
    awaiting_link: "Show the systems waiting",
    none: "None",
    eta: "ETA",
    completed: "Completed",
    systems: "Systems",
    count: "Count",
    cpu: "CPU",
    memory: "Memory",
    storage: "Storage",
    gpu: "GPU",
    search: "Search (id or name)",
    phase: "Phase",
    tenant: "Tenant",
    wave: "Wave",
    node: "Node",
    sort: "Sort",
    any: "Any",
    apply: "Filter",
    clear: "Clear filters",
    sort_id: "By id",
    sort_name: "By name",
    sort_phase: "By phase",
    sort_start: "By planned start",
    system_id: "System id",
    name: "Name",
    planned_start: "Planned start",
    paging: |page, pages, total| format!("Page {page} of {pages}, {total} systems"),
    prev: "Previous",
    next: "Next",
    no_match: "No system matches.",
    status: "Status",
    region: "Region",
    security_level: "Security level",
    attempts: "Attempts",
    started: "Started",
    finished: "Finished",
    conditions: "Conditions",
    condition_type: "Type",
    reason: "Reason",
    message: "Message",
    why_blocked: "Why it is blocked (the planner's explanation)",
    status_message: "Status message",
    history: "History",
    time: "Time",
    transition: "Change",
    actor: "By",
    approval: "Cutover approval",
    approval_required: "The cutovers of this wave need an approval.",
    approval_not_required: "The cutovers of this wave need no approval.",
    approved_by: "Approved by",
    approval_pending: "Approved, waiting for the cutover to start",
    approve: "Approve cutover",
    revoke: "Revoke approval",
    approval_reason: "Reason or ticket (optional)",
    confirm_approve: "Approve the cutover of this system?",
    confirm_revoke: "Revoke the cutover approval of this system?",
    confirm: "Confirm",
    cancel: "Cancel",
    done_approved: "Cutover approved.",
    done_already: "It was approved before; that approval stands.",
    done_revoked: "Approval revoked.",
    not_found: "Not found",
    not_found_detail: |kind, name| format!("There is no {kind} named {name}."),
    error: "The request could not be completed",
    back: "Back",
    executor: "Executor",
    tier: "Tier",
    ready: "Ready",
    not_ready: "Not ready",
    active_migrations: "Active migrations",
    allocated_of: "Allocated / allocatable",
    level: "Level",
    home_node: "Home node",
    quota_used: "Used / quota",
    no_history: "Nothing yet.",
    kind_system: "system",
    kind_wave: "wave",
    kind_page: "page",
};

/// A phase's name in `lang` (the API's name for one this console does not know).
pub fn phase(lang: Lang, name: &str) -> String {
    let Some(phase) = Phase::ALL.into_iter().find(|p| p.as_str() == name) else { return name.to_owned() };
    let (zh, en) = match phase {
        Phase::Pending => ("待调度", "Pending"),
        Phase::Scheduled => ("已排期", "Scheduled"),
        Phase::Provisioning => ("资源准备中", "Provisioning"),
        Phase::Replicating => ("数据同步中", "Replicating"),
        Phase::AwaitingCutover => ("等待割接", "Awaiting cutover"),
        Phase::CuttingOver => ("割接中", "Cutting over"),
        Phase::Verifying => ("验证中", "Verifying"),
        Phase::Completed => ("已完成", "Completed"),
        Phase::Failed => ("失败", "Failed"),
        Phase::RolledBack => ("已回滚", "Rolled back"),
        Phase::Blocked => ("受阻", "Blocked"),
        Phase::NotMigrated => ("不迁移", "Not migrated"),
    };
    match lang {
        Lang::Zh => zh.to_owned(),
        Lang::En => en.to_owned(),
    }
}

/// A wave's phase in `lang` (`Pending`, `Running`, `Paused`, `Completed`, `Failed`).
pub fn wave_phase(lang: Lang, name: &str) -> String {
    let (zh, en) = match name {
        "Pending" => ("待开始", "Pending"),
        "Running" => ("进行中", "Running"),
        "Paused" => ("已暂停", "Paused"),
        "Completed" => ("已完成", "Completed"),
        "Failed" => ("失败", "Failed"),
        other => (other, other),
    };
    match lang {
        Lang::Zh => zh.to_owned(),
        Lang::En => en.to_owned(),
    }
}

/// Jiangsu's province and cities by region code (GB/T 2260).
const REGIONS: [(&str, &str, &str); 14] = [
    ("320000", "江苏省", "Jiangsu"),
    ("320100", "南京市", "Nanjing"),
    ("320200", "无锡市", "Wuxi"),
    ("320300", "徐州市", "Xuzhou"),
    ("320400", "常州市", "Changzhou"),
    ("320500", "苏州市", "Suzhou"),
    ("320600", "南通市", "Nantong"),
    ("320700", "连云港市", "Lianyungang"),
    ("320800", "淮安市", "Huai'an"),
    ("320900", "盐城市", "Yancheng"),
    ("321000", "扬州市", "Yangzhou"),
    ("321100", "镇江市", "Zhenjiang"),
    ("321200", "泰州市", "Taizhou"),
    ("321300", "宿迁市", "Suqian"),
];

/// A region code with its name: `南京市 (320100)`; a district or county shows its city's name
/// with its own code: `苏州市 · 320583`. `province` is the whole province.
pub fn region(lang: Lang, code: &str) -> String {
    let name = |(_, zh, en): &(&str, &'static str, &'static str)| if lang == Lang::Zh { *zh } else { *en };
    if code == "province" {
        return name(&REGIONS[0]).to_owned();
    }
    if let Some(entry) = REGIONS.iter().find(|(c, ..)| *c == code) {
        return format!("{} ({code})", name(entry));
    }
    let city = code.get(..4).map(|c| format!("{c}00"));
    match REGIONS.iter().find(|(c, ..)| Some(*c) == city.as_deref()) {
        Some(entry) => format!("{} · {code}", name(entry)),
        None => code.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(region(Lang::Zh, "320100"), "南京市 (320100)");
        assert_eq!(region(Lang::Zh, "320583"), "苏州市 · 320583");
        assert_eq!(region(Lang::En, "320500"), "Suzhou (320500)");
        assert_eq!(region(Lang::Zh, "province"), "江苏省");
        assert_eq!(region(Lang::Zh, "110000"), "110000");
        assert_eq!(phase(Lang::Zh, "AwaitingCutover"), "等待割接");
        assert_eq!(phase(Lang::En, "Whatever"), "Whatever");
        assert_eq!(wave_phase(Lang::Zh, "Running"), "进行中");
        assert_eq!(Lang::from_cookie(Some("en")), Lang::En);
        assert_eq!(Lang::from_cookie(Some("fr")), Lang::Zh);
    }
}
