<?php
// Runs sign.php on vectors.json and prints {key: value} as JSON (compared by compare.py).
require __DIR__ . '/sign.php';

$v = json_decode(file_get_contents($argv[1]), true, 512, JSON_THROW_ON_ERROR);
$out = [];
foreach ($v['tickets'] as $t) {
    $r = chats3_sign_ticket($t['secret'], $t['fields']);
    $out["ticket/{$t['name']}/ticket"] = $r['ticket'];
    $out["ticket/{$t['name']}/signature"] = $r['signature'];
}
foreach ($v['systemMessages'] as $m) {
    $r = chats3_sign_system_message($m['secret'], $m['integratorId'], $m['conversationId'], $m['body'], $m['timestamp']);
    $out["sysmsg/{$m['name']}/signature"] = $r['signature'];
}
foreach ($v['webhook']['cases'] as $c) {
    $out["webhook/{$c['name']}"] = chats3_verify_webhook($v['webhook']['secret'], $c['header'], $c['body'], $c['now'], $v['webhook']['toleranceSeconds']);
}
echo chats3_json($out), "\n";
