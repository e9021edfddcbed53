// Stream data-width converter (identity on the element sequence), INW -> OUTW bits per word.
//
// A bit queue of INW + OUTW bits: input words are appended above the valid bits, output words
// are taken from the bottom (element 0 stays in the LSBs, as the packing contract wants).
// in0_V_TREADY depends only on the fill level (no combinational path from out_V_TREADY), and
// the queue can take a word and give a word in the same cycle, so the narrower side runs at one
// word per cycle. Any ratio works; the frame's bit count must be a multiple of both widths
// (checked by the generator).
//
// Latency: 1 cycle from the input word that completes an output word to that output word
// (t -> t + 1).
module codesign_dwc #(
    parameter integer INW = 8,
    parameter integer OUTW = 8
) (
    input  wire             ap_clk,
    input  wire             ap_rst_n,
    input  wire [INW-1:0]   in0_V_TDATA,
    input  wire             in0_V_TVALID,
    output wire             in0_V_TREADY,
    output wire [OUTW-1:0]  out_V_TDATA,
    output wire             out_V_TVALID,
    input  wire             out_V_TREADY
);
    localparam integer BW = INW + OUTW;
    localparam integer CW = $clog2(BW + 1);
    reg [BW-1:0] q;
    reg [CW-1:0] cnt;
    assign out_V_TVALID = (cnt >= OUTW);
    assign out_V_TDATA = q[OUTW-1:0];
    assign in0_V_TREADY = (cnt + INW <= BW);
    wire in_fire = in0_V_TREADY && in0_V_TVALID;
    wire out_fire = out_V_TVALID && out_V_TREADY;
    wire [BW-1:0] q_after = out_fire ? (q >> OUTW) : q;
    wire [CW-1:0] cnt_after = out_fire ? cnt - OUTW : cnt;
    wire [BW-1:0] ins = {{OUTW{1'b0}}, in0_V_TDATA} << cnt_after;
    wire [BW-1:0] keep = ~({BW{1'b1}} << cnt_after);

    always @(posedge ap_clk) begin
        if (!ap_rst_n) begin
            cnt <= 0;
            q <= 0;
        end else begin
            q <= in_fire ? ((q_after & keep) | ins) : q_after;
            cnt <= cnt_after + (in_fire ? INW : 0);
        end
    end
endmodule

// Integer down-conversion, INW = K * OUTW: a K-word shift register B (output word in its LSBs,
// shifted by OUTW per word taken) and a one-word input stage S, so the next input word is taken
// while B drains and loads into B the cycle B empties: the narrow output side runs at one word
// per cycle with in0_V_TREADY a register (= !S full, no combinational path from out_V_TREADY).
// Per bit one 3:1 select (S / input / shifted B) instead of the generic queue's fill-count
// shifter (128 -> 32 bits: ~130 LUT instead of 534 in Yosys xc7).
// Latency: 1 cycle (an input word taken by an empty B is the output word the next cycle).
module codesign_dwc_down #(
    parameter integer INW = 32,
    parameter integer OUTW = 8
) (
    input  wire             ap_clk,
    input  wire             ap_rst_n,
    input  wire [INW-1:0]   in0_V_TDATA,
    input  wire             in0_V_TVALID,
    output wire             in0_V_TREADY,
    output wire [OUTW-1:0]  out_V_TDATA,
    output wire             out_V_TVALID,
    input  wire             out_V_TREADY
);
    localparam integer K = INW / OUTW;
    localparam integer RB = $clog2(K + 1);
    reg [INW-1:0] b, s;
    reg [RB-1:0] r;             // words left in b
    reg s_full;
    reg last;                   // r == 1: the word on the output is b's last
    assign out_V_TVALID = (r != 0);
    assign out_V_TDATA = b[OUTW-1:0];
    assign in0_V_TREADY = !s_full;
    wire in_fire = in0_V_TVALID && !s_full;
    wire out_fire = (r != 0) && out_V_TREADY;
    wire empty_next = (r == 0) || (out_fire && last);   // b holds no word after this cycle

    always @(posedge ap_clk) begin
        if (empty_next) begin
            if (s_full) b <= s;
            else if (in_fire) b <= in0_V_TDATA;
        end else if (out_fire) begin
            b <= b >> OUTW;
        end
        if (in_fire && !(empty_next && !s_full)) s <= in0_V_TDATA;
    end

    always @(posedge ap_clk) begin
        if (!ap_rst_n) begin
            r <= 0; s_full <= 1'b0; last <= 1'b0;
        end else if (empty_next) begin
            if (s_full || in_fire) begin
                r <= K; last <= (K == 1);
            end else begin
                r <= 0; last <= 1'b0;
            end
            s_full <= s_full && in_fire;   // never both (in0_V_TREADY = !s_full): S is free
        end else begin
            if (out_fire) begin
                r <= r - 1'b1;
                last <= (r == 2);
            end
            if (in_fire) s_full <= 1'b1;
        end
    end
endmodule

// Integer up-conversion, OUTW = K * INW: the first K-1 words shift into A (each new word on top,
// so word 0 ends in the LSBs), the K-th word and A go to the output register O in one step.
// Every data bit is a flip-flop with an enable and a fixed input (no select logic); the input
// only waits when the K-th word arrives while O is still full (in0_V_TREADY is a register
// function, no combinational path from out_V_TREADY).
// Latency: 1 cycle (the K-th input word to the output word).
module codesign_dwc_up #(
    parameter integer INW = 8,
    parameter integer OUTW = 32
) (
    input  wire             ap_clk,
    input  wire             ap_rst_n,
    input  wire [INW-1:0]   in0_V_TDATA,
    input  wire             in0_V_TVALID,
    output wire             in0_V_TREADY,
    output reg  [OUTW-1:0]  out_V_TDATA,
    output reg              out_V_TVALID,
    input  wire             out_V_TREADY
);
    localparam integer K = OUTW / INW;
    localparam integer CB = (K > 2) ? $clog2(K) : 1;
    localparam integer AW = OUTW - INW;
    reg [AW-1:0] a;
    reg [CB-1:0] c;             // words collected in a
    reg last;                   // c == K-1: the next word completes the output word
    assign in0_V_TREADY = !(last && out_V_TVALID);
    wire in_fire = in0_V_TVALID && in0_V_TREADY;
    wire [OUTW-1:0] cat = {in0_V_TDATA, a};

    always @(posedge ap_clk) begin
        if (in_fire && !last) a <= cat[OUTW-1:INW];
        if (in_fire && last) out_V_TDATA <= cat;
    end

    always @(posedge ap_clk) begin
        if (!ap_rst_n) begin
            c <= 0; last <= (K == 1); out_V_TVALID <= 1'b0;
        end else begin
            if (in_fire) begin
                if (last) begin
                    c <= 0; last <= (K == 1);
                end else begin
                    c <= c + 1'b1; last <= (c == K - 2);
                end
            end
            if (in_fire && last) out_V_TVALID <= 1'b1;
            else if (out_V_TREADY) out_V_TVALID <= 1'b0;
        end
    end
endmodule
