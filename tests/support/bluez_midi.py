# -*- coding: utf-8 -*-
'''python-dbusmock template: a simulated BlueZ 5 with one BLE-MIDI peripheral, for the
`organ` integration tests (tests/ble.rs starts it through tests/support/bluez.rs).

What it simulates: bluetoothd on a private D-Bus *system* bus, with adapter hci0 and one
peripheral (default "WIDI Jack", AA:BB:CC:11:22:33, RSSI -52 dBm) that appears shortly after
StartDiscovery and advertises the BLE-MIDI service 03B80E5A-EDE8-4B33-A751-6CE34EC4C700. On
Connect it resolves a GATT tree with the BLE-MIDI characteristic
7772E5DB-3868-4112-A1A9-F2669D106BF3 (read, write-without-response, notify) and an MTU. Every
value written to a characteristic is appended to a JSON-lines capture file; so are connects and
link losses, so a test can tell which writes belong to which connection. It can lose the link
after N writes (Connected and ServicesResolved go false, writes fail with "Not connected", as
bluetoothd does), stay out of reach for a while after that (Connect fails), and forget the
device like bluetoothd's TemporaryTimeout (it comes back on the next scan).

Adapted from the working reference in the shared tools (bluez-mock); it extends dbusmock's stock
`bluez5` template with what btleplug (bluez-async) needs and the stock one lacks:

  * Device1.Connect/Disconnect that really update `Connected` and `ServicesResolved` (the stock
    Connect never sets ServicesResolved, so btleplug's connect() would hang for 30 s),
  * the GATT tree (GattService1 / GattCharacteristic1 / GattDescriptor1 child objects, which
    bluez-async finds via Introspect),
  * GattCharacteristic1.WriteValue / ReadValue / StartNotify / StopNotify / AcquireWrite /
    AcquireNotify,
  * an Introspect that lists interfaces before child nodes, as BlueZ does (bluez-async's XML
    parser rejects dbusmock's order).

Parameters (JSON via `-p`):
  name              advertised name                  (default "WIDI Jack")
  address           MAC                              (default "AA:BB:CC:11:22:33")
  capture           JSON-lines capture file          (default $TMPDIR/blemidi-capture.jsonl)
  mtu               GattCharacteristic1.MTU          (default 247; 0 = omit the property, as
                    BlueZ < 5.62 does; btleplug then assumes 23)
  discover_delay_ms device appears N ms after StartDiscovery (default 300);
                    -1 = device exists from the start
  resolve_delay_ms  ServicesResolved N ms after Connect returns (default 50)
  notify_hex        value sent as notification after StartNotify ("" = none)
  drop_link_after_writes  lose the link 200 ms after the Nth WriteValue of a connection
                    (0 = never); counts again from 0 after each reconnect
  drop_link_times   how many times to lose the link that way (default 1)
  drop_mode         "signal" (default): the link goes 200 ms after that write, and BlueZ's
                    signals tell the client; "write-error": the link goes during that write,
                    which fails with org.bluez.Error.Failed "Not connected"; "no-answer": that
                    write reaches the device (it is captured) but its answer comes only after
                    `no_answer_ms`, when the link has gone (the window where the client cannot
                    know whether the packet arrived)
  no_answer_ms      how late the answer comes in "no-answer" mode (default 2500; the mock does
                    nothing else meanwhile)
  drop_with_note_on lose the link (or stall) only on a write (the Nth or later) whose packet leaves a key
                    down on channels 1-3 (default false)
  stall_after_writes  stop answering on the Nth WriteValue of the piece (or, with
                    drop_with_note_on, the first from the Nth on whose packet leaves a key down),
                    once: that write reaches the device (it is captured) and its answer comes
                    `stall_ms` later; the link stays up. The mock does nothing else meanwhile, so
                    every call queues behind it, as behind a bluetoothd that stopped answering
                    (0 = never)
  stall_ms          how long the stall lasts (default 1500)
  unreachable_ms    after a link loss, Connect fails for this long (default 0), like a device
                    out of range
  temporary_timeout_ms  remove the (unpaired, "temporary") device object N ms after it got
                    disconnected, like bluetoothd's TemporaryTimeout (0 = never); it re-appears
                    on the next StartDiscovery
  keep_gatt         keep the GATT objects across disconnects (default true, like BlueZ's
                    default `Cache = always`); false = remove them on disconnect

Capture records (one JSON object per line):
  {"t": unix time, "path": ..., "uuid": ..., "type": "command"|"request"|..., "hex": "80 80 90 3C 64"}
  {"t": unix time, "event": "connect"|"connect-refused"|"link-down"|"write-failed"|"no-answer"|"stall"|"answered",
   "reason": ...}
'''

import json
import os
import socket
import time
from xml.etree import ElementTree

import dbus
from gi.repository import GLib

from dbusmock import OBJECT_MANAGER_IFACE, mockobject
from dbusmock.templates import bluez5
# Re-export the stock template's @dbus.service.method functions: AddTemplate()
# picks up every symbol of this module that carries _dbus_interface.
from dbusmock.templates.bluez5 import *  # noqa: F401,F403 pylint: disable=wildcard-import,unused-wildcard-import

BUS_NAME = 'org.bluez'
MAIN_OBJ = '/'
SYSTEM_BUS = True
IS_OBJECT_MANAGER = True

ADAPTER_IFACE = 'org.bluez.Adapter1'
DEVICE_IFACE = 'org.bluez.Device1'
SERVICE_IFACE = 'org.bluez.GattService1'
CHAR_IFACE = 'org.bluez.GattCharacteristic1'
DESC_IFACE = 'org.bluez.GattDescriptor1'

MIDI_SERVICE_UUID = '03b80e5a-ede8-4b33-a751-6ce34ec4c700'
MIDI_CHAR_UUID = '7772e5db-3868-4112-a1a9-f2669d106bf3'
CCCD_UUID = '00002902-0000-1000-8000-00805f9b34fb'
GATT_SERVICE_UUID = '00001801-0000-1000-8000-00805f9b34fb'
SERVICE_CHANGED_UUID = '00002a05-0000-1000-8000-00805f9b34fb'

CFG = {}


def _v(value):
    '''variant_level=1 copy of a dbus value (as BlueZ sends inside a{sv})'''
    return value.__class__(value, variant_level=1)


def _manager():
    return mockobject.objects['/']


def _capture(record):
    with open(CFG['capture'], 'a', encoding='utf-8') as f:
        f.write(json.dumps(record) + '\n')


def _props_changed(obj, iface, changed, invalidated=None):
    obj.EmitSignal(dbus.PROPERTIES_IFACE, 'PropertiesChanged', 'sa{sv}as', [
        iface, dbus.Dictionary(changed, signature='sv'),
        dbus.Array(invalidated or [], signature='s')])


def _set_props(obj, iface, changed):
    for k, val in changed.items():
        obj.props[iface][k] = val
    _props_changed(obj, iface, changed)


# ---------------------------------------------------------------- GATT tree ---

def _gatt_paths(dev_path):
    svc = dev_path + '/service0010'
    return {
        'gatt_svc': dev_path + '/service0001',
        'gatt_chr': dev_path + '/service0001/char0002',
        'svc': svc,
        'chr': svc + '/char0011',
        'desc': svc + '/char0011/desc0013',
    }


def _add(path, iface, props, methods):
    _manager().AddObject(path, iface, props, methods)
    _manager().object_manager_emit_added(path)


def _remove(path):
    if path in mockobject.objects:
        _manager().EmitSignal(OBJECT_MANAGER_IFACE, 'InterfacesRemoved', 'oas', [
            dbus.ObjectPath(path),
            dbus.Array(list(mockobject.objects[path].props.keys()), signature='s')])
        _manager().RemoveObject(path)


def _char_props(svc_path, uuid, flags, handle):
    props = {
        'UUID': dbus.String(uuid),
        'Service': dbus.ObjectPath(svc_path),
        'Value': dbus.Array([], signature='y'),
        'Notifying': dbus.Boolean(False),
        'Flags': dbus.Array(flags, signature='s'),
        'Handle': dbus.UInt16(handle),
        'MTU': dbus.UInt16(CFG['mtu']),
        'WriteAcquired': dbus.Boolean(False),
        'NotifyAcquired': dbus.Boolean(False),
    }
    if CFG['mtu'] <= 0:   # BlueZ < 5.62 has no MTU property
        del props['MTU']
    return props


def _char_methods():
    return [
        ('ReadValue', 'a{sv}', 'ay', char_read_value),
        ('WriteValue', 'aya{sv}', '', char_write_value),
        ('StartNotify', '', '', char_start_notify),
        ('StopNotify', '', '', char_stop_notify),
        ('AcquireWrite', 'a{sv}', 'hq', char_acquire_write),
        ('AcquireNotify', 'a{sv}', 'hq', char_acquire_notify),
        ('Confirm', '', '', ''),
    ]


def create_gatt(dev_path):
    p = _gatt_paths(dev_path)
    if p['svc'] in mockobject.objects:
        return
    # Generic Attribute service (so the client has to pick the right one)
    _add(p['gatt_svc'], SERVICE_IFACE, {
        'UUID': dbus.String(GATT_SERVICE_UUID), 'Device': dbus.ObjectPath(dev_path),
        'Primary': dbus.Boolean(True), 'Includes': dbus.Array([], signature='o'),
        'Handle': dbus.UInt16(0x0001)}, [])
    _add(p['gatt_chr'], CHAR_IFACE,
         _char_props(p['gatt_svc'], SERVICE_CHANGED_UUID, ['indicate'], 0x0002), _char_methods())
    # BLE-MIDI service / characteristic / CCCD
    _add(p['svc'], SERVICE_IFACE, {
        'UUID': dbus.String(MIDI_SERVICE_UUID), 'Device': dbus.ObjectPath(dev_path),
        'Primary': dbus.Boolean(True), 'Includes': dbus.Array([], signature='o'),
        'Handle': dbus.UInt16(0x0010)}, [])
    _add(p['chr'], CHAR_IFACE,
         _char_props(p['svc'], MIDI_CHAR_UUID,
                     ['read', 'write-without-response', 'notify'], 0x0011), _char_methods())
    _add(p['desc'], DESC_IFACE, {
        'UUID': dbus.String(CCCD_UUID), 'Characteristic': dbus.ObjectPath(p['chr']),
        'Value': dbus.Array([], signature='y'), 'Flags': dbus.Array([], signature='s'),
        'Handle': dbus.UInt16(0x0013)}, [
            ('ReadValue', 'a{sv}', 'ay', 'ret = dbus.Array([0, 0], signature="y")'),
            ('WriteValue', 'aya{sv}', '', '')])


def remove_gatt(dev_path):
    p = _gatt_paths(dev_path)
    for key in ('desc', 'chr', 'svc', 'gatt_chr', 'gatt_svc'):
        _remove(p[key])


# ------------------------------------------------------- characteristic methods

def char_read_value(char, options):
    _require_connected(char)
    return dbus.Array(char.props[CHAR_IFACE]['Value'], signature='y')


def _require_connected(char):
    dev_path = char.path.rsplit('/', 2)[0]
    dev = mockobject.objects.get(dev_path)
    if dev is None or not dev.props[DEVICE_IFACE]['Connected']:
        # what bluetoothd's gatt-client.c answers when there is no ATT link
        raise dbus.exceptions.DBusException('Not connected', name='org.bluez.Error.Failed')


def keys_struck(data):
    '''(channel, key) of the keys a BLE-MIDI packet leaves down on channels 1-3 (note-ons with a
    velocity that no later note-off in the packet releases); stops at a SysEx'''
    down = set()
    running = None
    i = 1  # after the header
    while i < len(data):
        if data[i] >= 0x80:  # a timestamp, then a status byte or running-status data
            i += 1
            if i < len(data) and data[i] >= 0x80:
                status = data[i]
                i += 1
                if status >= 0xF8:
                    continue
                if status >= 0xF0:
                    return down
                running = status
        if running is None:
            return down
        n = 1 if running & 0xF0 in (0xC0, 0xD0) else 2
        msg = data[i:i + n]
        i += n
        if len(msg) < n or running & 0x0F > 2:
            continue
        if running & 0xF0 == 0x90 and msg[1] > 0:
            down.add((running & 0x0F, msg[0]))
        elif running & 0xF0 in (0x80, 0x90):
            down.discard((running & 0x0F, msg[0]))
    return down


def char_write_value(char, value, options):
    _require_connected(char)
    data = bytes(int(b) for b in value)
    wtype = str(options.get('type', '')) if options else ''
    dev_path = char.path.rsplit('/', 2)[0]
    n_writes = getattr(char, 'n_writes', 0) + 1
    drop = CFG['drop_link_after_writes'] and not getattr(char, 'dropped', False) \
        and n_writes >= CFG['drop_link_after_writes'] and CFG['drops_done'] < CFG['drop_link_times'] \
        and (not CFG['drop_with_note_on'] or keys_struck(data))
    if drop and CFG['drop_mode'] == 'write-error':
        # The link dies under this very write: the write fails (after the signals went out).
        CFG['drops_done'] += 1
        _capture({'t': time.time(), 'event': 'write-failed'})
        _link_down(mockobject.objects[dev_path], 'link-loss')
        raise dbus.exceptions.DBusException('Not connected', name='org.bluez.Error.Failed')
    char.n_writes = n_writes
    CFG['writes'] += 1
    stall = CFG['stall_after_writes'] and not CFG['stalled'] and CFG['writes'] >= CFG['stall_after_writes'] \
        and (not CFG['drop_with_note_on'] or keys_struck(data))
    _capture({'t': time.time(), 'path': str(char.path), 'uuid': str(char.props[CHAR_IFACE]['UUID']),
              'type': wtype, 'hex': data.hex(' ').upper()})
    if stall:
        # The device got this packet; the answer comes late, and nothing else happens meanwhile.
        CFG['stalled'] = True
        _capture({'t': time.time(), 'event': 'stall'})
        time.sleep(CFG['stall_ms'] / 1000.0)
        _capture({'t': time.time(), 'event': 'answered'})
        return
    if drop and CFG['drop_mode'] == 'no-answer':
        # The device got this packet; the link dies before the answer, which comes late.
        CFG['drops_done'] += 1
        _capture({'t': time.time(), 'event': 'no-answer'})
        _link_down(mockobject.objects[dev_path], 'link-loss')
        time.sleep(CFG['no_answer_ms'] / 1000.0)
        raise dbus.exceptions.DBusException('Not connected', name='org.bluez.Error.Failed')
    if drop:
        char.dropped = True
        CFG['drops_done'] += 1
        GLib.timeout_add(200, lambda: (_link_down(mockobject.objects[dev_path], 'link-loss'), False)[1])


def char_start_notify(char):
    _require_connected(char)
    if not char.props[CHAR_IFACE]['Notifying']:
        _set_props(char, CHAR_IFACE, {'Notifying': dbus.Boolean(True, variant_level=1)})
    if CFG['notify_hex']:
        value = bytes.fromhex(CFG['notify_hex'])

        def _notify():
            if char.path in mockobject.objects and char.props[CHAR_IFACE]['Notifying']:
                _props_changed(char, CHAR_IFACE,
                               {'Value': dbus.Array(list(value), signature='y', variant_level=1)})
            return False
        GLib.timeout_add(100, _notify)


def char_stop_notify(char):
    if not char.props[CHAR_IFACE]['Notifying']:
        raise dbus.exceptions.DBusException('No notify session started', name='org.bluez.Error.Failed')
    _set_props(char, CHAR_IFACE, {'Notifying': dbus.Boolean(False, variant_level=1)})


def _acquire(char, options, kind):
    # BlueZ hands out one end of a SOCK_SEQPACKET pair; we keep the other end and
    # log whatever the client writes into it.
    mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    char.acquired = getattr(char, 'acquired', []) + [mine]

    def _on_data(fd, cond):
        try:
            data = mine.recv(4096)
        except OSError:
            return False
        if not data:
            return False
        _capture({'t': time.time(), 'path': str(char.path), 'type': 'acquired-fd', 'hex': data.hex(' ').upper()})
        return True
    if kind == 'write':
        GLib.io_add_watch(mine.fileno(), GLib.IO_IN | GLib.IO_HUP, _on_data)
    fd = dbus.types.UnixFd(theirs.fileno())
    theirs.close()
    return (fd, dbus.UInt16(CFG['mtu']))


def char_acquire_write(char, options):
    return _acquire(char, options, 'write')


def char_acquire_notify(char, options):
    return _acquire(char, options, 'notify')


# ------------------------------------------------------------ device methods ---

def device_connect(device):
    if device.props[DEVICE_IFACE]['Connected']:
        raise dbus.exceptions.DBusException('Already Connected', name='org.bluez.Error.AlreadyConnected')
    if time.time() < getattr(device, 'unreachable_until', 0):
        _capture({'t': time.time(), 'event': 'connect-refused'})
        # what bluetoothd answers when an LE connection attempt times out
        raise dbus.exceptions.DBusException('le-connection-abort-by-local', name='org.bluez.Error.Failed')
    _capture({'t': time.time(), 'event': 'connect'})
    device.connected = True
    _set_props(device, DEVICE_IFACE, {'Connected': dbus.Boolean(True, variant_level=1)})
    create_gatt(device.path)

    def _resolved():
        if device.props[DEVICE_IFACE]['Connected']:
            _set_props(device, DEVICE_IFACE, {'ServicesResolved': dbus.Boolean(True, variant_level=1)})
        return False
    if CFG['resolve_delay_ms'] <= 0:
        _resolved()
    else:
        GLib.timeout_add(CFG['resolve_delay_ms'], _resolved)


def _link_down(device, reason):
    device.log(f'link down ({reason}) {device.path}')
    _capture({'t': time.time(), 'event': 'link-down', 'reason': reason})
    if reason == 'link-loss' and CFG['unreachable_ms'] > 0:
        device.unreachable_until = time.time() + CFG['unreachable_ms'] / 1000.0
    device.connected = False
    _set_props(device, DEVICE_IFACE, {'ServicesResolved': dbus.Boolean(False, variant_level=1)})
    _set_props(device, DEVICE_IFACE, {'Connected': dbus.Boolean(False, variant_level=1)})
    if CFG['keep_gatt']:
        chr_path = _gatt_paths(device.path)['chr']
        if chr_path in mockobject.objects:
            char = mockobject.objects[chr_path]
            if char.props[CHAR_IFACE]['Notifying']:
                _set_props(char, CHAR_IFACE, {'Notifying': dbus.Boolean(False, variant_level=1)})
            char.dropped = False
            char.n_writes = 0
    else:
        remove_gatt(device.path)
    if CFG['temporary_timeout_ms'] > 0:
        GLib.timeout_add(CFG['temporary_timeout_ms'], lambda: (_expire_device(device.path), False)[1])


def _expire_device(dev_path):
    dev = mockobject.objects.get(dev_path)
    if dev is None or dev.props[DEVICE_IFACE]['Connected']:
        return
    dev.log(f'temporary device expired {dev_path}')
    remove_gatt(dev_path)
    _remove(dev_path)


def device_disconnect(device):
    if not device.props[DEVICE_IFACE]['Connected']:
        raise dbus.exceptions.DBusException('Not Connected', name='org.bluez.Error.NotConnected')
    _link_down(device, 'Disconnect()')


def add_midi_device(adapter_name='hci0'):
    manager = _manager()
    path = manager.AddDevice(adapter_name, CFG['address'], CFG['name'])
    device = mockobject.objects[path]
    device.props[DEVICE_IFACE]['AddressType'] = dbus.String('random', variant_level=1)
    device.props[DEVICE_IFACE]['UUIDs'] = dbus.Array([MIDI_SERVICE_UUID], signature='s', variant_level=1)
    device.props[DEVICE_IFACE]['RSSI'] = dbus.Int16(-52, variant_level=1)
    # replace the stock (incomplete) Connect / Disconnect
    device.AddMethod(DEVICE_IFACE, 'Connect', '', '', device_connect)
    device.AddMethod(DEVICE_IFACE, 'Disconnect', '', '', device_disconnect)
    return path


# ------------------------------------------------------------ adapter methods --

def _ensure_filter_prop(adapter):
    # stock StartDiscovery/StopDiscovery read props['DiscoveryFilter'] (KeyError if
    # SetDiscoveryFilter was never called); never store None (GetAll can't marshal it)
    if 'DiscoveryFilter' not in adapter.props[ADAPTER_IFACE]:
        adapter.props[ADAPTER_IFACE]['DiscoveryFilter'] = dbus.Dictionary({}, signature='sv')


def adapter_start_discovery(adapter):
    _ensure_filter_prop(adapter)
    bluez5.StartDiscovery(adapter)
    dev_path = adapter.path + '/dev_' + CFG['address'].replace(':', '_').upper()
    if dev_path not in mockobject.objects:
        GLib.timeout_add(max(CFG['discover_delay_ms'], 1),
                         lambda: (dev_path in mockobject.objects or add_midi_device(), False)[1])


def adapter_stop_discovery(adapter):
    _ensure_filter_prop(adapter)
    bluez5.StopDiscovery(adapter)


def _patch_introspect():
    '''dbusmock appends property-only interfaces (e.g. org.bluez.GattService1, which
    has no methods) *after* the child <node/> elements. bluez-async parses Introspect
    XML with serde-xml-rs, which rejects non-contiguous <interface> elements with
    XmlParseError("duplicate field `interface`"). Real BlueZ emits interfaces first,
    so re-order: all <node> children go last.'''
    orig = mockobject.DBusMockObject.Introspect
    if getattr(orig, '_blemidi_patched', False):
        return

    @dbus.service.method(dbus.INTROSPECTABLE_IFACE, in_signature='', out_signature='s',
                         path_keyword='object_path', connection_keyword='connection')
    def Introspect(self, object_path, connection):  # pylint: disable=invalid-name
        tree = ElementTree.fromstring(orig(self, object_path, connection))
        for node in [c for c in tree if c.tag == 'node']:
            tree.remove(node)
            tree.append(node)
        return ElementTree.tostring(tree, encoding='unicode')
    Introspect._blemidi_patched = True
    mockobject.DBusMockObject.Introspect = Introspect


def load(mock, parameters):
    _patch_introspect()
    CFG.update({
        'name': 'WIDI Jack',
        'address': 'AA:BB:CC:11:22:33',
        'capture': os.path.join(os.environ.get('TMPDIR', '/tmp'), 'blemidi-capture.jsonl'),
        'mtu': 247,
        'discover_delay_ms': 300,
        'resolve_delay_ms': 50,
        'notify_hex': '8080F8',
        'drop_link_after_writes': 0,
        'keep_gatt': True,
        'temporary_timeout_ms': 0,
        'drop_link_times': 1,
        'unreachable_ms': 0,
        'drop_mode': 'signal',
        'no_answer_ms': 2500,
        'drop_with_note_on': False,
        'stall_after_writes': 0,
        'stall_ms': 1500,
    })
    CFG.update({str(k): (v if not isinstance(v, (dbus.String, str)) else str(v))
                for k, v in (parameters or {}).items()})
    for k in ('mtu', 'discover_delay_ms', 'resolve_delay_ms', 'drop_link_after_writes',
              'temporary_timeout_ms', 'drop_link_times', 'unreachable_ms', 'no_answer_ms',
              'stall_after_writes', 'stall_ms'):
        CFG[k] = int(CFG[k])
    CFG['keep_gatt'] = bool(CFG['keep_gatt'])
    CFG['drop_with_note_on'] = bool(CFG['drop_with_note_on'])
    CFG['drops_done'] = 0
    CFG['writes'] = 0
    CFG['stalled'] = False
    if os.path.exists(CFG['capture']):
        os.unlink(CFG['capture'])

    bluez5.load(mock, parameters)
    # __main__ registers the main object only after load(); bluez5.AddAdapter needs it.
    mockobject.objects[mock.path] = mock
    adapter_path = mock.AddAdapter('hci0', 'feas-host')
    adapter = mockobject.objects[adapter_path]
    adapter.AddMethod(ADAPTER_IFACE, 'StartDiscovery', '', '', adapter_start_discovery)
    adapter.AddMethod(ADAPTER_IFACE, 'StopDiscovery', '', '', adapter_stop_discovery)
    if CFG['discover_delay_ms'] < 0:
        add_midi_device()
