# Synesthesia control from TouchDesigner: callbacks for the network described in README.md (§4).
#
# This file is three pastes, not a module to import: each section goes into the DAT named in its header.
# TouchDesigner provides `op`, `mod` and the callback arguments; nothing here runs outside TouchDesigner.
#
# Operators (exact parameter settings):
#   ctl          Constant CHOP   channels named syn/ctl/<control> (intensity, speed, smoothing, freeze,
#                                blackout, hud, seed)
#   oscout_dat   OSC Out DAT     Protocol: Messaging (UDP) | Network Address: 127.0.0.1 | Network Port: 9001
#                                | Active: On
#   ctl_exec     CHOP Execute DAT  CHOPs: ctl | Value Change: On | Off to On, While On, On to Off,
#                                While Off: Off | Active: On            <- paste "CHOP Execute DAT" below
#   oscin_dat    OSC In DAT      Protocol: Messaging (UDP) | Network Port: 9002 | Address Scope: /syn/*
#                                | Split Bundle into Messages: On | Active: On
#                                                                        <- paste "OSC In DAT" into its callbacks
#   syn_state    Table DAT       empty; filled by the OSC In DAT callback
#   synesthesia  Text DAT        <- paste "Module" below; call as mod.synesthesia.override('happy')

# fmt: off
# ruff: noqa

# --- CHOP Execute DAT (ctl_exec) ---------------------------------------------------------------------

# Controls that take an integer; the rest are sent as floats (the engine accepts 1.0 as "on").
INT_CONTROLS = ('freeze', 'blackout', 'hud', 'seed')


def onValueChange(channel, sampleIndex, val, prev):
    # channel.name is e.g. 'syn/ctl/intensity' -> address '/syn/ctl/intensity', one value per message
    address = '/' + channel.name.lstrip('/')
    name = address.rsplit('/', 1)[-1]
    value = int(round(val)) if name in INT_CONTROLS else float(val)
    op('oscout_dat').sendOSC(address, [value])
    return


def onOffToOn(channel, sampleIndex, val, prev):
    return


def whileOn(channel, sampleIndex, val, prev):
    return


def onOnToOff(channel, sampleIndex, val, prev):
    return


def whileOff(channel, sampleIndex, val, prev):
    return


# --- OSC In DAT callbacks (oscin_dat_callbacks) ------------------------------------------------------

def onReceiveOSC(dat, rowIndex, message, byteData, timeStamp, address, args, peer):
    # Keep the latest value of every /syn/... address in the Table DAT 'syn_state':
    # column 0 the address, column 1 the first argument, column 2 all arguments.
    table = op('syn_state')
    if table is None:
        return
    first = args[0] if args else ''
    every = ' '.join(str(a) for a in args)
    if table.row(address) is None:
        table.appendRow([address, first, every])
    else:
        table[address, 1] = first
        table[address, 2] = every
    return


# --- Module (Text DAT 'synesthesia') ------------------------------------------------------------------

OSC_OUT = 'oscout_dat'
REPLY_PORT = 9002  # the OSC In DAT's Network Port: where query replies should go


def _send(name, *values):
    op(OSC_OUT).sendOSC('/syn/ctl/' + name, list(values))


def override(label):
    """Force an emotion by class name: 'angry', 'happy', 'sad', 'neutral'."""
    _send('override', str(label))


def override_va(valence, arousal):
    """Force a point on the valence/arousal plane (each -1..1)."""
    _send('override', float(valence), float(arousal))


def release():
    """Back to what the room feels."""
    _send('override', 'none')


def seed(n):
    """Jump to another region of the picture space (same seed, same walk)."""
    _send('seed', int(n))


def query(port=REPLY_PORT):
    """Ask for the full state; the reply (one bundle) arrives at the OSC In DAT on `port`."""
    _send('query', int(port))
