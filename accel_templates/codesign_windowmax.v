// Window maximum (the reduction of a max pool whose windows overlap or are padded), NHWC.
//
// Reads the sliding window's stream, element order (k, c) with c innermost, PE channels per
// word: per output pixel K kernel positions x CF = C/PE words. A running maximum per channel
// word is kept in a small register file of CF words (acc); the word of the last kernel
// position goes to the output register as max(acc, x). One input word per clock, never
// stalled by the output (it is written only once per K*CF words, and only when the output
// register is free or taken: adv); so cycles per frame = NV * K * CF.
//
// Latency: 1 cycle (the word that completes a window's channel word leaves at t + 1).
module codesign_windowmax #(
    parameter integer K = 9,
    parameter integer C = 1,
    parameter integer PE = 1,
    parameter integer BITS = 4,
    parameter integer SIGNED = 0,
    parameter integer CF = C / PE,
    parameter integer CFB = (CF > 1) ? $clog2(CF) : 1,
    parameter integer WW = PE * BITS
) (
    input  wire          ap_clk,
    input  wire          ap_rst_n,
    input  wire [WW-1:0] in0_V_TDATA,
    input  wire          in0_V_TVALID,
    output wire          in0_V_TREADY,
    output reg  [WW-1:0] out_V_TDATA,
    output reg           out_V_TVALID,
    input  wire          out_V_TREADY
);
    reg [WW-1:0] acc [0:CF-1];
    reg [CFB-1:0] cf;
    reg [15:0] k;
    reg cf_last, k_first, k_last;   // cf == CF-1, k == 0, k == K-1 (flags kept with the counters)

    wire adv = !out_V_TVALID || out_V_TREADY;
    assign in0_V_TREADY = adv;
    wire fire = adv && in0_V_TVALID;

    function automatic [WW-1:0] vmax(input [WW-1:0] a, input [WW-1:0] b);
        integer i;
        reg [BITS-1:0] ea, eb;
        reg gt;
        begin
            for (i = 0; i < PE; i = i + 1) begin
                ea = a[i*BITS +: BITS];
                eb = b[i*BITS +: BITS];
                if (SIGNED != 0) gt = $signed(ea) > $signed(eb);
                else gt = ea > eb;
                vmax[i*BITS +: BITS] = gt ? ea : eb;
            end
        end
    endfunction

    wire [WW-1:0] cur = k_first ? in0_V_TDATA : vmax(acc[cf], in0_V_TDATA);

    always @(posedge ap_clk) begin
        if (fire && !k_last) acc[cf] <= cur;
        if (fire && k_last) out_V_TDATA <= cur;
    end

    always @(posedge ap_clk) begin
        if (!ap_rst_n) begin
            cf <= 0; k <= 0; cf_last <= (CF == 1); k_first <= 1'b1; k_last <= (K == 1);
            out_V_TVALID <= 1'b0;
        end else begin
            if (adv) out_V_TVALID <= fire && k_last;
            if (fire) begin
                cf_last <= cf_last ? (CF == 1) : (cf == CF - 2);
                if (cf_last) begin
                    cf <= 0;
                    k_first <= k_last;
                    k_last <= k_last ? (K == 1) : (k == K - 2);
                    k <= k_last ? 16'd0 : k + 1'b1;
                end else begin
                    cf <= cf + 1'b1;
                end
            end
        end
    end
endmodule
