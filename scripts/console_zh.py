"""Refresh the console's zh-CN catalogue: extract, merge the translations below, write the .po, compile the .mo.

Run from the repository root: ``python scripts/console_zh.py``.  A message without a translation here fails
the run, so no English slips into the Chinese console unnoticed.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from babel.messages.catalog import Catalog
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po, write_po

ZH = {
    "%(owner)s, version %(version)s, from %(from)s": "%(owner)s，第 %(version)s 版，自 %(from)s 起",
    "A submit would hold %(hold)s.": "提交将冻结 %(hold)s。",
    "API": "接口", "Action": "操作", "Actor": "操作者", "All jobs, with filters": "全部作业（可筛选）", "At": "时间",
    "Attempt": "尝试", "Audit": "审计", "Audit log": "审计日志", "Available": "可用", "Back": "返回",
    "Backlog by class and site": "按类别和节点的积压", "Balance": "余额", "Bandwidth (Gbit/s)": "带宽（Gbit/s）",
    "Booked": "记账时间", "Cancel this job": "取消此作业",
    "Capacity: %(scu)s standard compute units per hour (%(p)s P).": "总算力：每小时 %(scu)s 标准算力单位（%(p)s P）。",
    "Cards": "加速卡", "Charges": "费用", "Class": "类别", "Command": "命令", "Cores": "核数",
    "Counts only: jobs, their commands and tenants are shown to their owners after sign-in.":
        "仅显示数量：作业、命令和租户只在其所有者登录后可见。",
    "Created": "创建时间", "Credit limit": "信用额度", "Day": "日期", "Details": "详情", "Earnings by day": "每日收入",
    "Earnings by day; the table beside holds the same figures": "每日收入；旁边的表格列出相同数据",
    "Events": "事件", "Filter": "筛选", "First page": "第一页", "Free capacity by class": "各类别空闲算力",
    "Free cards": "空闲加速卡", "Free cores": "空闲核数", "From": "起", "Green share": "绿电占比", "Grid map": "算力网络地图",
    "Held for running jobs": "运行中作业冻结金额",
    "It did not carry this session's form token. Reload the page and try again.": "表单缺少本会话的令牌。请刷新页面后重试。",
    "Job": "作业", "Job %(id)s": "作业 %(id)s", "Jobs": "作业", "Jobs by state": "各状态作业数", "Jobs, newest first": "作业（最新在前）",
    "Kind": "类型", "Language": "语言", "Latency (ms)": "时延（毫秒）", "Latest charges": "最近费用", "Latitude, longitude": "纬度，经度",
    "Ledger reconciliation": "账本对账", "Links": "链路", "Logs": "日志", "Main": "主导航",
    "Map of sites and links; the tables below hold the same figures": "节点与链路地图；下方表格列出相同数据",
    "Memory (GB)": "内存（GB）", "Name": "名称", "Net ledger change": "账本净变动", "No backlog.": "没有积压。",
    "No earnings yet.": "尚无收入。", "No event yet.": "尚无事件。", "No job matches.": "没有匹配的作业。", "No job yet.": "尚无作业。",
    "No link is recorded.": "没有登记链路。", "No output yet.": "尚无输出。", "No pool can run this job.": "没有资源池能运行此作业。",
    "No pool is online.": "没有在线的资源池。",
    "No price book is in force: jobs run free of charge.": "当前没有生效的价目表：作业免费运行。",
    "No settlement yet.": "尚无结算。", "No site has joined yet.": "尚无节点接入。", "No site.": "没有节点。",
    "No transfer yet.": "尚无转账。", "No usage reported yet.": "尚未上报用量。", "No voucher programme.": "没有算力券计划。",
    "Not for your role": "您的角色无权访问", "Object": "对象", "Older jobs": "更早的作业", "Operations": "运营",
    "Pasted once; the browser then keeps a signed session cookie that scripts cannot read. Revoking the token ends the session.":
        "只需粘贴一次；之后浏览器保存一个脚本无法读取的签名会话 Cookie。吊销令牌即结束会话。",
    "Pool": "资源池", "Pools": "资源池", "Engine": "引擎", "Device": "设备", "No pool is registered.": "没有登记的资源池。", "Postings (fen)": "分录（分）", "Price (fen per unit)": "单价（分/单位）", "Price book": "价目表",
    "Price book (JSON: entries; version and effective_from default to the next and now)":
        "价目表（JSON：entries；version 与 effective_from 默认为下一版和当前时间）",
    "Price book published.": "价目表已发布。", "Price books in force": "生效中的价目表",
    "Price it at every eligible pool": "在所有可用资源池询价", "Programme": "计划", "Province": "省份", "Publish": "发布",
    "Publish a price book": "发布价目表", "Quote": "询价", "Quotes, cheapest first": "报价（最便宜在前）", "Rating": "计费",
    "Rating lag (s)": "计费延迟（秒）",
    "Read-only. Each ledger transfer names the usage record it charges and the price book version that priced it.":
        "只读。每笔账本转账都注明其计费的用量记录和所用价目表版本。",
    "Refresh": "刷新", "Refused": "已拒绝", "Report": "上报", "Revoked": "已吊销", "Role": "角色", "Run time (s)": "运行时长（秒）",
    "SCU/h": "SCU/时", "SCU/h (all)": "SCU/时（全部）", "Settlement": "结算", "Settlement periods": "结算周期",
    "Sign in": "登录", "Sign out": "退出", "Signed in as %(role)s of %(tenant)s": "已登录：%(tenant)s 的%(role)s",
    "Site": "节点", "Site and pool": "节点与资源池", "Sites": "节点", "Sites and earnings": "节点与收入", "Sites and links": "节点与链路",
    "Sites drawn at their coordinates (longitude, latitude); colour: green-power share. No borders are drawn: an operator may load its own approved map data.":
        "节点按经纬度绘制；颜色表示绿电占比。不绘制边界：运营方可加载其经审核批准的地图数据（审图号）。",
    "Sites' health": "节点健康", "Skip to content": "跳到正文", "Standard compute units": "标准算力单位", "State": "状态",
    "Status": "状态", "Submit": "提交", "Submit a job": "提交作业", "Submitted": "提交时间", "Tenant": "租户",
    "Tenants and tokens": "租户与令牌",
    "That token was not accepted: it is unknown, revoked, expired or an agent's.": "令牌未被接受：未知、已吊销、已过期或属于代理。",
    "The form was refused": "表单被拒绝", "The grid": "算力网络",
    "The job stops now; time already used is still charged.": "作业将立即停止；已使用的时长仍会计费。",
    "The market board will show depth and clearing prices once the market runs; until then, the published price books. Bands are today's hours 0–23 (UTC).":
        "交易市场运行后，这里将显示深度和出清价格；在此之前显示已发布的价目表。时段为今天 0–23 时（UTC）。",
    "The request was refused": "请求被拒绝", "Time-of-use bands": "分时电价时段", "To": "止", "Token": "令牌", "Total": "合计",
    "Unit": "单位", "Units": "数量", "Usage": "用量", "Usage record": "用量记录",
    "Usage record → charge → ledger postings": "用量记录 → 费用 → 账本分录",
    "Usage records waiting to be rated": "待计费的用量记录", "Voucher": "算力券", "Vouchers": "算力券", "Wallet": "钱包",
    "Wallet and jobs": "钱包与作业", "Why here: the scheduler's explanation": "为何在此：调度器的说明",
    "Yes, cancel the job": "确认取消作业", "Your API token": "您的 API 令牌",
    "Your token's role may not open this page.": "您令牌的角色无权打开此页面。",
    "adjustment": "调整", "agent": "代理", "any": "任意", "attempt %(n)s": "第 %(n)s 次尝试", "auditor": "审计员",
    "balanced": "平衡", "cancelled": "已取消", "charge": "扣费", "consumer": "用户", "deep_valley": "深谷",
    "differences found": "发现差异", "failed": "失败", "flat": "平", "flat price": "固定价格", "general": "通用算力",
    "hold_place": "冻结", "hold_release": "解冻", "hold_void": "撤销冻结", "intelligent": "智能算力", "lost": "丢失", "no": "否",
    "offline": "离线", "online": "在线", "operator": "运营方", "payout": "结算支付", "peak": "峰", "pending": "等待中",
    "placed": "已分配", "provider": "供应方", "quantum": "量子算力", "queued_at_site": "节点排队", "requeued": "重新排队",
    "reversal": "冲正", "running": "运行中", "stand-in: borrowed windows": "替代数据：借用时段", "suanwang": "算网",
    "suanwang %(version)s · times in UTC": "算网 %(version)s · 时间为 UTC", "suanwang API": "算网接口",
    "suanwang console": "算网控制台", "succeeded": "成功", "super": "超算", "tip": "尖峰", "topup": "充值", "valley": "谷",
    "voucher_fund": "算力券注资", "yes": "是",
}

OUT = Path("src/suanwang/web/locale/zh_CN/LC_MESSAGES")


def main() -> int:
    pot = Path("build/console-messages.pot")
    pot.parent.mkdir(exist_ok=True)
    subprocess.run([sys.executable, "-m", "babel.messages.frontend", "extract", "-F", "babel.cfg", "-k", "N_",
                    "-k", "_", "--no-location", "--sort-output", "--omit-header", "-o", str(pot), "."],
                   check=True, capture_output=True)
    with pot.open("rb") as f:
        template = read_po(f)
    catalog = Catalog(locale="zh_CN", project="suanwang", charset="utf-8")
    missing = [m.id for m in template if m.id and m.id not in ZH]
    for m in template:
        if m.id:
            catalog.add(m.id, ZH.get(str(m.id), ""))
    OUT.mkdir(parents=True, exist_ok=True)
    with (OUT / "messages.po").open("wb") as f:
        write_po(f, catalog, omit_header=False, sort_output=True, width=120)
    with (OUT / "messages.mo").open("wb") as f:
        write_mo(f, catalog)
    for m in missing:
        print(f"untranslated: {m!r}", file=sys.stderr)
    return 1 if missing else 0


if __name__ == "__main__":
    raise SystemExit(main())
