#!/bin/bash
# devstack plugin for nova-xenapi (see devstack/README.md): installs the driver, prepares
# the XenServer host with xenapi-bootstrap, points nova-compute at it, and runs a second
# neutron-openvswitch-agent ("neutron-agent-dom0") that drives dom0's Open vSwitch.

MODE=$1
PHASE=$2

function _nova_xenapi_check_settings {
    local xtrace missing=""
    xtrace=$(set +o | grep xtrace)
    set +o xtrace  # a traced test shows the password's value
    [[ -n "$XENAPI_CONNECTION_URL" && -n "$XENAPI_PASSWORD" ]] || missing=yes
    $xtrace
    if [[ -n "$missing" ]]; then
        die $LINENO "nova-xenapi: set XENAPI_CONNECTION_URL and XENAPI_PASSWORD in local.conf"
    fi
}

function _nova_xenapi_bootstrap_args {
    # the arguments every xenapi-bootstrap run takes; the password goes through a file
    local args="--url $XENAPI_CONNECTION_URL --username $XENAPI_USER"
    args+=" --password-file $NOVA_XENAPI_PASSWORD_FILE --ssh-port $XENAPI_SSH_PORT"
    args+=" --image-handler $XENAPI_IMAGE_HANDLER --integration-bridge $OVS_BRIDGE"
    [[ -n "$XENAPI_CA_FILE" ]] && args+=" --ca-file $XENAPI_CA_FILE"
    [[ -n "$XENAPI_CERT_THUMBPRINT" ]] && args+=" --certificate-thumbprint $XENAPI_CERT_THUMBPRINT"
    [[ -n "$XENAPI_HOST_KEY_FINGERPRINT" ]] && args+=" --host-key-fingerprint $XENAPI_HOST_KEY_FINGERPRINT"
    [[ -n "$XENAPI_COMPUTE_VM_UUID" ]] && args+=" --compute-vm-uuid $XENAPI_COMPUTE_VM_UUID"
    echo "$args"
}

NOVA_XENAPI_PASSWORD_FILE=$NOVA_CONF_DIR/xenserver-password

function install_nova_xenapi {
    setup_develop $NOVA_XENAPI_DIR
}

function configure_nova_xenapi {
    _nova_xenapi_check_settings
    # the password never goes on a command line or into stack.sh's trace
    local xtrace
    xtrace=$(set +o | grep xtrace)
    set +o xtrace
    (umask 077; printf '%s\n' "$XENAPI_PASSWORD" | sudo tee $NOVA_XENAPI_PASSWORD_FILE >/dev/null)
    $xtrace
    sudo chown $STACK_USER $NOVA_XENAPI_PASSWORD_FILE
    sudo chmod 600 $NOVA_XENAPI_PASSWORD_FILE

    iniset $NOVA_CPU_CONF DEFAULT compute_driver xenapi.XenAPIDriver
    # nova-compute and its agent are named after the XenServer host they manage
    local dom0_host
    dom0_host=$(echo "$XENAPI_CONNECTION_URL" | cut -d/ -f3 | cut -d: -f1)
    iniset $NOVA_CPU_CONF DEFAULT host "$dom0_host"

    # the dom0 agent: a copy of devstack's agent config, pointed at dom0 by the bootstrap
    sudo cp $NEUTRON_CORE_PLUGIN_CONF $NOVA_XENAPI_DOM0_AGENT_CONF
    sudo chown $STACK_USER $NOVA_XENAPI_DOM0_AGENT_CONF
    iniset $NOVA_XENAPI_DOM0_AGENT_CONF DEFAULT host "$dom0_host"
    iniset $NOVA_XENAPI_DOM0_AGENT_CONF securitygroup firewall_driver openvswitch

    # check first (it changes nothing and says what is missing), then prepare the host: dom0
    # plugins, the integration network, OVSDB on TCP, and the [xenserver] and [xenapi],
    # [agent], [ovs] and [privsep*] sections of the two files
    local args
    args=$(_nova_xenapi_bootstrap_args)
    $NOVA_BIN_DIR/xenapi-bootstrap $args --nova-conf $NOVA_CPU_CONF \
        --neutron-conf $NOVA_XENAPI_DOM0_AGENT_CONF --check || true
    $NOVA_BIN_DIR/xenapi-bootstrap $args --nova-conf $NOVA_CPU_CONF \
        --neutron-conf $NOVA_XENAPI_DOM0_AGENT_CONF
}

function start_nova_xenapi_agent {
    run_process neutron-agent-dom0 "$NEUTRON_BIN_DIR/neutron-openvswitch-agent \
        --config-file $NEUTRON_CONF --config-file $NOVA_XENAPI_DOM0_AGENT_CONF"
}

if [[ "$MODE" == "stack" ]]; then
    case "$PHASE" in
        install)
            install_nova_xenapi
            ;;
        post-config)
            configure_nova_xenapi
            ;;
        extra)
            start_nova_xenapi_agent
            ;;
        test-config)
            # what tempest must know about XenServer guests
            iniset $TEMPEST_CONFIG compute volume_device_name xvdb
            iniset $TEMPEST_CONFIG compute-feature-enabled vnc_console True
            ;;
    esac
elif [[ "$MODE" == "unstack" ]]; then
    stop_process neutron-agent-dom0
elif [[ "$MODE" == "clean" ]]; then
    sudo rm -f $NOVA_XENAPI_PASSWORD_FILE $NOVA_XENAPI_DOM0_AGENT_CONF
fi
